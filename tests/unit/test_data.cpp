// Dataset readers on small files written here in the exact on-disk formats (gzip IDX through
// zlib, CIFAR-10 binary records), corrupt variants of them, scaling and padding, and sharding.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "cli_support.h"
#include "paths.h"
#include "saddle/data/datasets.h"
#include "saddle/error.h"

namespace saddle {
namespace {

std::string temp_dir(const std::string& name) {
  const saddle::testing::Path dir = saddle::testing::temp_root() /
                                    ("saddle_test_data_" + name + "_" + std::to_string(::getpid()));
  saddle::remove_tree(dir);
  saddle::create_directories(dir);
  return dir.string();
}

void put_u32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

// IDX images: n images of rows x cols whose pixel (i, r, c) is (i + r + c) % 256, with `extra`
// bytes added to (or, negative, removed from) the body.
std::string idx_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, int extra = 0) {
  std::string out;
  put_u32(&out, magic);
  put_u32(&out, n);
  put_u32(&out, rows);
  put_u32(&out, cols);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t r = 0; r < rows; ++r)
      for (uint32_t c = 0; c < cols; ++c) out.push_back(static_cast<char>((i + r + c) % 256));
  if (extra > 0) out.append(static_cast<size_t>(extra), '\0');
  if (extra < 0) out.resize(out.size() - static_cast<size_t>(-extra));
  return out;
}

std::string idx_labels(uint32_t n) {
  std::string out;
  put_u32(&out, 0x00000801);
  put_u32(&out, n);
  for (uint32_t i = 0; i < n; ++i) out.push_back(static_cast<char>(i % 10));
  return out;
}

using testing::write_bytes;

// CIFAR records: label i % 10, channel ch pixels all equal to (i * 3 + ch) % 256.
std::string cifar_records(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out.push_back(static_cast<char>(i % 10));
    for (int ch = 0; ch < 3; ++ch) out.append(1024, static_cast<char>((i * 3 + ch) % 256));
  }
  return out;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no saddle::Error thrown)";
}

TEST(DataIdx, ReadsImagesAndLabels) {
  const std::string dir = temp_dir("idx");
  write_gzip(dir + "/img.gz", idx_images(0x00000803, 5, 28, 28));
  write_gzip(dir + "/lab.gz", idx_labels(5));
  torch::Tensor images = read_idx_images(dir + "/img.gz");
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{5, 28, 28}));
  EXPECT_EQ(images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(images[3][2][1].item<int>(), 6);
  torch::Tensor labels = read_idx_labels(dir + "/lab.gz");
  EXPECT_EQ(labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(labels.equal(torch::arange(5, torch::kInt64)));
  // Only the first items.
  EXPECT_EQ(read_idx_images(dir + "/img.gz", 2).size(0), 2);
  EXPECT_TRUE(read_idx_images(dir + "/img.gz", 2).equal(images.narrow(0, 0, 2)));
  EXPECT_EQ(read_idx_labels(dir + "/lab.gz", 3).size(0), 3);
  saddle::remove_tree(dir);
}

TEST(DataIdx, CorruptFilesNameTheFileAndTheProblem) {
  const std::string dir = temp_dir("idx_bad");
  const std::string path = dir + "/train-images-idx3-ubyte.gz";
  write_gzip(path, idx_images(0x00000801, 2, 4, 4));
  EXPECT_NE(error_of([&] { read_idx_images(path); }).find(path + ": bad magic number 0x00000801"),
            std::string::npos);
  write_gzip(path, idx_images(0x00000803, 10, 28, 28, -7000));
  const std::string truncated = error_of([&] { read_idx_images(path); });
  EXPECT_NE(truncated.find(path + ": truncated: expected 7840 bytes of pixels, got 840"),
            std::string::npos)
      << truncated;
  write_gzip(path, idx_images(0x00000803, 2, 4, 4, 3));
  EXPECT_NE(error_of([&] { read_idx_images(path); }).find("trailing data"), std::string::npos);
  write_gzip(path, std::string("\0\0\x08", 3));
  EXPECT_NE(error_of([&] { read_idx_images(path); }).find(path + ": truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { read_idx_images(dir + "/missing.gz"); }).find("missing.gz: cannot open"),
            std::string::npos);
  saddle::remove_tree(dir);
}

TEST(DataFashionMnist, ScalesAndPadsTo32WithBackgroundMinusOne) {
  const std::string dir = temp_dir("fmnist");
  write_gzip(dir + "/train-images-idx3-ubyte.gz", idx_images(0x00000803, 4, 28, 28));
  write_gzip(dir + "/train-labels-idx1-ubyte.gz", idx_labels(4));
  ImageDataset data = load_fashion_mnist(dir, /*train=*/true);
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{4, 1, 32, 32}));
  EXPECT_EQ(data.images.scalar_type(), torch::kFloat32);
  EXPECT_GE(data.images.min().item<float>(), -1.0f);
  EXPECT_LE(data.images.max().item<float>(), 1.0f);
  // Border is background (-1); pixel (i, r, c) of the original sits at (r + 2, c + 2).
  EXPECT_TRUE(data.images.narrow(2, 0, 2).eq(-1).all().item<bool>());
  EXPECT_TRUE(data.images.narrow(3, 30, 2).eq(-1).all().item<bool>());
  EXPECT_NEAR(data.images[1][0][2 + 3][2 + 4].item<float>(), 8 / 127.5 - 1, 1e-6);
  EXPECT_NEAR(to_unit_range_32(torch::full({1, 32, 32}, 255, torch::kUInt8)).max().item<float>(),
              1.0f, 1e-6);
  // Image and label counts must agree.
  write_gzip(dir + "/train-labels-idx1-ubyte.gz", idx_labels(3));
  EXPECT_NE(error_of([&] { load_fashion_mnist(dir); }).find("holds 4 images but"),
            std::string::npos);
  saddle::remove_tree(dir);
}

TEST(DataFashionMnist, InstalledDatasetLoadsWhenPresent) {
  if (!saddle::path_exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST not installed in " << kFashionMnistDir;
  }
  ImageDataset data = load_dataset("fashion-mnist", "", /*train=*/false, 100);
  EXPECT_EQ(data.images.sizes(), (std::vector<int64_t>{100, 1, 32, 32}));
  EXPECT_EQ(data.labels.size(0), 100);
  EXPECT_LE(data.labels.max().item<int64_t>(), 9);
}

TEST(DataCifar, ReadsRecordsAndRejectsBadFiles) {
  const std::string dir = temp_dir("cifar");
  for (int i = 1; i <= 5; ++i)
    write_bytes(dir + "/data_batch_" + std::to_string(i) + ".bin", cifar_records(3));
  write_bytes(dir + "/test_batch.bin", cifar_records(2));
  ImageDataset train = load_cifar10(dir, true);
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{15, 3, 32, 32}));
  EXPECT_EQ(train.labels[4].item<int64_t>(), 1);  // second record of data_batch_2
  EXPECT_NEAR(train.images[1][2][5][7].item<float>(), 5 / 127.5 - 1, 1e-6);  // record 1, channel 2
  EXPECT_EQ(load_cifar10(dir, false).size(), 2);
  EXPECT_EQ(load_cifar10(dir, true, 7).size(), 7);
  write_bytes(dir + "/test_batch.bin", cifar_records(2) + "x");
  EXPECT_NE(error_of([&] { load_cifar10(dir, false); })
                .find(dir + "/test_batch.bin: wrong size: 6147 bytes is not a positive multiple of "
                            "the 3073-byte"),
            std::string::npos);
  std::string bad_label = cifar_records(1);
  bad_label[0] = 10;
  write_bytes(dir + "/test_batch.bin", bad_label);
  EXPECT_NE(error_of([&] { load_cifar10(dir, false); }).find("bad label 10"), std::string::npos);
  saddle::remove_file(dir + "/data_batch_3.bin");
  EXPECT_NE(error_of([&] { load_cifar10(dir, true); }).find("data_batch_3.bin: cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_cifar10("", true); }).find("no default location"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_dataset("svhn", dir); }).find("unknown dataset 'svhn'"),
            std::string::npos);
  saddle::remove_tree(dir);
}

TEST(DataShard, ShardsAreDisjointCoveringAndDeterministic) {
  const int64_t n = 103;
  const int ranks = 4;
  std::set<int64_t> seen;
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    torch::Tensor idx = shard_indices(n, r, ranks, 7);
    EXPECT_TRUE(idx.equal(shard_indices(n, r, ranks, 7)));
    EXPECT_GE(idx.size(0), n / ranks);
    EXPECT_LE(idx.size(0), n / ranks + 1);
    for (int64_t i = 0; i < idx.size(0); ++i) seen.insert(idx[i].item<int64_t>());
    total += idx.size(0);
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(static_cast<int64_t>(seen.size()), n);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), n - 1);
  EXPECT_FALSE(shard_indices(n, 0, ranks, 7).equal(shard_indices(n, 0, ranks, 8)));
  EXPECT_THROW(shard_indices(n, 4, ranks, 7), Error);
  EXPECT_THROW(shard_indices(3, 0, ranks, 7), Error);
}

TEST(DataSampler, EveryItemOncePerEpochAndReshuffledDeterministically) {
  const int64_t n = 10;
  BatchSampler sampler(n);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::vector<torch::Tensor> batches;
  for (int i = 0; i < 5; ++i) batches.push_back(sampler.next_batch(4, gen));  // 2 epochs
  EXPECT_EQ(sampler.epoch(), 1);
  torch::Tensor all = torch::cat(batches);
  torch::Tensor first = std::get<0>(all.narrow(0, 0, n).sort());
  torch::Tensor second = std::get<0>(all.narrow(0, n, n).sort());
  EXPECT_TRUE(first.equal(torch::arange(n, torch::kInt64)));
  EXPECT_TRUE(second.equal(torch::arange(n, torch::kInt64)));
  EXPECT_FALSE(all.narrow(0, 0, n).equal(all.narrow(0, n, n)));
  BatchSampler again(n);
  at::Generator gen2 = at::make_generator<at::CPUGeneratorImpl>(3);
  for (const auto& b : batches) EXPECT_TRUE(again.next_batch(4, gen2).equal(b));
  EXPECT_EQ(sampler.next_batch(25, gen).size(0), 25);  // larger than the dataset
  EXPECT_THROW(BatchSampler(0), Error);
}

// CIFAR-10 end to end through the CLI: three colour channels through the game, the solver and the
// sample grid, whose PNG header must say RGB (colour type 2).
TEST(DataCifar, WganGpTrainsOnCifarAndWritesColourSamples) {
  const std::string dir = temp_dir("cifar_run");
  for (int i = 1; i <= 5; ++i)
    write_bytes(dir + "/data_batch_" + std::to_string(i) + ".bin", cifar_records(8));
  write_bytes(dir + "/test_batch.bin", cifar_records(4));
  const std::string out = dir + "/run";
  const auto r = testing::run_program(SADDLE_CLI_PATH,
                                      "solve --game wgan-gp --dataset cifar10 --data-dir " + dir +
                                          " --filters 4 --batch 4 --solver extra-adam --lr 1e-3 "
                                          "--iters 3 --eval-every 3 --no-progress "
                                          "--log-level warn --out " +
                                          out,
                                      dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string png = testing::slurp_file(out + "/samples/iter_0000003.png");
  ASSERT_GT(png.size(), 26u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  EXPECT_EQ(static_cast<int>(png[25]), 2)
      << "colour type of " << out << "/samples/iter_0000003.png";
  EXPECT_TRUE(saddle::path_exists(out + "/summary.json"));
  saddle::remove_tree(dir);
}

}  // namespace
}  // namespace saddle
