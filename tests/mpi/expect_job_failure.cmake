# Runs an MPI job that must FAIL FAST: passes when the job exits non-zero within LIMIT seconds and
# its output (stdout and stderr) matches EXPECT; prints how long the job took to end.
#   cmake -DMPIEXEC=mpirun -DNP=2 -DPROGRAM=prog -DMODE=catch -DEXPECT=regex -DLIMIT=9 -P this
foreach(var MPIEXEC NP PROGRAM MODE EXPECT LIMIT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "expect_job_failure.cmake: -D${var}=... is required")
  endif()
endforeach()

string(TIMESTAMP start "%s%f")
execute_process(
  COMMAND ${MPIEXEC} -np ${NP} --oversubscribe --allow-run-as-root --bind-to none ${PROGRAM} ${MODE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE output ERROR_VARIABLE output TIMEOUT ${LIMIT})
string(TIMESTAMP end "%s%f")
math(EXPR elapsed_ms "(${end} - ${start}) / 1000")

message("---- job output ----\n${output}---- end of job output ----")
message("job ended after ${elapsed_ms} ms with exit status '${rc}'")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job did not end within ${LIMIT} s: a rank hangs after another failed")
endif()
if(rc STREQUAL "0")
  message(FATAL_ERROR "the job exited 0, but a rank failed")
endif()
if(NOT output MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not show the error (expected a match of '${EXPECT}')")
endif()
message("PASS: the failure ended the whole job and was reported")
