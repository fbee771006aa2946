// Precompiled once and reused by every saddle target: LibTorch's headers dominate compile time.
#pragma once
#include <torch/torch.h>
