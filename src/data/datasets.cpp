#include "saddle/data/datasets.h"

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "saddle/error.h"
#include "saddle/run/files.h"

namespace saddle {

namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarPixels = 3 * kCifarSide * kCifarSide;
constexpr int64_t kCifarRecord = 1 + kCifarPixels;
constexpr int64_t kCifarClasses = 10;
// A corrupt header must not make us allocate its claimed size up front: read in chunks.
constexpr int64_t kChunk = int64_t{1} << 24;

// A gzip (or plain: zlib reads those transparently) file opened for reading, closed on scope exit.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), file_(gzopen(path.c_str(), "rb")) {
    SADDLE_CHECK(file_ != nullptr, path, ": cannot open: ", std::strerror(errno ? errno : ENOENT));
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to `n` bytes, appending them to `out`; returns how many were read (fewer at EOF).
  int64_t read(int64_t n, std::vector<uint8_t>* out) {
    int64_t total = 0;
    while (total < n) {
      const int64_t want = std::min(n - total, kChunk);
      const size_t old = out->size();
      out->resize(old + static_cast<size_t>(want));
      const int got = gzread(file_, out->data() + old, static_cast<unsigned>(want));
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        throw Error(detail::concat(path_, ": corrupt gzip data: ", message));
      }
      out->resize(old + static_cast<size_t>(got));
      total += got;
      if (got < want) break;
    }
    return total;
  }

  bool at_end() {
    std::vector<uint8_t> probe;
    return read(1, &probe) == 0;
  }

 private:
  std::string path_;
  gzFile file_;
};

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads an IDX header with `dims` dimensions after checking its magic; returns the dimensions.
std::vector<int64_t> read_idx_header(GzFile& file, const std::string& path, uint32_t magic,
                                     int dims, const char* what) {
  std::vector<uint8_t> header;
  const int64_t want = 4 * (1 + dims);
  const int64_t got = file.read(want, &header);
  SADDLE_CHECK(got == want, path, ": truncated: expected a ", want, "-byte IDX header, got ", got,
               " bytes");
  const uint32_t found = big_endian_u32(header.data());
  if (found != magic) {
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "0x%08x (expected 0x%08x for %s)", found, magic, what);
    throw Error(detail::concat(path, ": bad magic number ", buffer));
  }
  std::vector<int64_t> sizes;
  for (int d = 0; d < dims; ++d) {
    const int64_t size = big_endian_u32(header.data() + 4 * (d + 1));
    SADDLE_CHECK(size > 0 && (d == 0 || size <= 4096), path, ": bad dimension ", d, " of size ",
                 size);
    sizes.push_back(size);
  }
  return sizes;
}

// Reads the body: `items` items of `item_bytes` bytes, then (unless limited) checks the file ends.
std::vector<uint8_t> read_idx_body(GzFile& file, const std::string& path, int64_t declared,
                                   int64_t item_bytes, int64_t limit, const char* what) {
  SADDLE_CHECK(limit >= -1, path, ": bad limit ", limit);
  const int64_t items = limit < 0 ? declared : std::min(declared, limit);
  const int64_t want = items * item_bytes;
  std::vector<uint8_t> body;
  body.reserve(static_cast<size_t>(std::min(want, kChunk)));
  const int64_t got = file.read(want, &body);
  SADDLE_CHECK(got == want, path, ": truncated: expected ", want, " bytes of ", what, ", got ",
               got);
  if (limit < 0) {
    SADDLE_CHECK(file.at_end(), path, ": trailing data after the ", want, " declared bytes of ",
                 what);
  }
  return body;
}

torch::Tensor bytes_to_tensor(std::vector<uint8_t>& bytes, torch::IntArrayRef sizes) {
  return torch::from_blob(bytes.data(), sizes, torch::kUInt8).clone();
}

std::string join(const std::string& dir, const std::string& file) { return join_path(dir, file); }

}  // namespace

ImageDataset ImageDataset::select(const torch::Tensor& indices) const {
  return ImageDataset{images.index_select(0, indices), labels.index_select(0, indices)};
}

torch::Tensor read_idx_images(const std::string& path, int64_t limit) {
  GzFile file(path);
  const std::vector<int64_t> dims = read_idx_header(file, path, kIdxImagesMagic, 3, "images");
  std::vector<uint8_t> body =
      read_idx_body(file, path, dims[0], dims[1] * dims[2], limit, "pixels");
  const int64_t n = static_cast<int64_t>(body.size()) / (dims[1] * dims[2]);
  return bytes_to_tensor(body, {n, dims[1], dims[2]});
}

torch::Tensor read_idx_labels(const std::string& path, int64_t limit) {
  GzFile file(path);
  const std::vector<int64_t> dims = read_idx_header(file, path, kIdxLabelsMagic, 1, "labels");
  std::vector<uint8_t> body = read_idx_body(file, path, dims[0], 1, limit, "labels");
  return bytes_to_tensor(body, {static_cast<int64_t>(body.size())}).to(torch::kInt64);
}

void read_cifar10_batch(const std::string& path, torch::Tensor* images, torch::Tensor* labels,
                        int64_t limit) {
  SADDLE_CHECK(limit >= -1, path, ": bad limit ", limit);
  SADDLE_CHECK(is_regular_file(path), path,
               ": cannot open: ", path_exists(path) ? "not a regular file" : "no such file");
  const int64_t size = file_size(path);
  SADDLE_CHECK(size > 0 && size % kCifarRecord == 0, path, ": wrong size: ", size,
               " bytes is not a positive multiple of the ", kCifarRecord,
               "-byte CIFAR-10 record (1 label + 3x32x32 pixels)");
  const int64_t records = limit < 0 ? size / kCifarRecord : std::min(size / kCifarRecord, limit);
  std::ifstream in(path, std::ios::binary);
  SADDLE_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  torch::Tensor raw = torch::empty({records, kCifarRecord}, torch::kUInt8);
  in.read(reinterpret_cast<char*>(raw.data_ptr<uint8_t>()),
          static_cast<std::streamsize>(records * kCifarRecord));
  SADDLE_CHECK(in.gcount() == records * kCifarRecord, path, ": truncated: expected ",
               records * kCifarRecord, " bytes, got ", in.gcount());
  torch::Tensor label = raw.select(1, 0).to(torch::kInt64);
  if (records > 0) {
    const int64_t worst = label.max().item<int64_t>();
    SADDLE_CHECK(worst < kCifarClasses, path, ": bad label ", worst, " (CIFAR-10 labels are 0..9)");
  }
  *labels = label;
  *images = raw.narrow(1, 1, kCifarPixels).reshape({records, 3, kCifarSide, kCifarSide});
}

torch::Tensor to_unit_range_32(const torch::Tensor& pixels) {
  torch::Tensor x = pixels.dim() == 3 ? pixels.unsqueeze(1) : pixels;
  SADDLE_CHECK(x.dim() == 4 && x.scalar_type() == torch::kUInt8,
               "images must be uint8 [N, C, H, W] or [N, H, W], got ", x.sizes());
  const int64_t h = x.size(2), w = x.size(3);
  SADDLE_CHECK(h <= kCifarSide && w <= kCifarSide, "images of ", h, "x", w, " do not fit in 32x32");
  torch::Tensor scaled = x.to(torch::kFloat32).div_(127.5).sub_(1.0);
  if (h == kCifarSide && w == kCifarSide) return scaled.contiguous();
  const int64_t top = (kCifarSide - h) / 2, left = (kCifarSide - w) / 2;
  return torch::constant_pad_nd(scaled, {left, kCifarSide - w - left, top, kCifarSide - h - top},
                                -1.0);
}

namespace {

ImageDataset fashion_mnist_pixels(const std::string& dir, bool train, int64_t limit) {
  const std::string root = dir.empty() ? kFashionMnistDir : dir;
  const std::string prefix = train ? "train" : "t10k";
  const std::string image_path = join(root, prefix + "-images-idx3-ubyte.gz");
  const std::string label_path = join(root, prefix + "-labels-idx1-ubyte.gz");
  torch::Tensor pixels = read_idx_images(image_path, limit);
  torch::Tensor labels = read_idx_labels(label_path, limit);
  SADDLE_CHECK(pixels.size(0) == labels.size(0), image_path, " holds ", pixels.size(0),
               " images but ", label_path, " holds ", labels.size(0), " labels");
  return ImageDataset{pixels.unsqueeze(1), labels};
}

ImageDataset cifar10_pixels(const std::string& dir, bool train, int64_t limit) {
  SADDLE_CHECK(!dir.empty(),
               "cifar10 has no default location: give the folder with "
               "data_batch_1.bin .. test_batch.bin (--data-dir)");
  std::string root = dir;
  if (is_directory(join(dir, "cifar-10-batches-bin"))) {
    root = join(dir, "cifar-10-batches-bin");
  }
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i)
      files.push_back(join(root, "data_batch_" + std::to_string(i) + ".bin"));
  } else {
    files.push_back(join(root, "test_batch.bin"));
  }
  std::vector<torch::Tensor> images, labels;
  int64_t remaining = limit;
  for (const auto& file : files) {
    if (remaining == 0) break;
    torch::Tensor x, y;
    read_cifar10_batch(file, &x, &y, remaining);
    // The batches of one set hold equal numbers of records (10,000 each in CIFAR-10): a file cut
    // on a record boundary still has a valid size, but not the others' count.
    if (limit < 0 && !images.empty()) {
      SADDLE_CHECK(x.size(0) == images.front().size(0), file, " holds ", x.size(0),
                   " records where ", files.front(), " holds ", images.front().size(0),
                   " (CIFAR-10 batch files hold 10000 each; is it cut short?)");
    }
    if (remaining > 0) remaining -= x.size(0);
    images.push_back(x);
    labels.push_back(y);
  }
  return ImageDataset{torch::cat(images), torch::cat(labels)};
}

ImageDataset scaled(ImageDataset pixels) {
  pixels.images = to_unit_range_32(pixels.images);
  return pixels;
}

}  // namespace

ImageDataset load_fashion_mnist(const std::string& dir, bool train, int64_t limit) {
  return scaled(fashion_mnist_pixels(dir, train, limit));
}

ImageDataset load_cifar10(const std::string& dir, bool train, int64_t limit) {
  return scaled(cifar10_pixels(dir, train, limit));
}

ImageDataset load_dataset_pixels(const std::string& name, const std::string& dir, bool train,
                                 int64_t limit) {
  if (name == "fashion-mnist") return fashion_mnist_pixels(dir, train, limit);
  if (name == "cifar10") return cifar10_pixels(dir, train, limit);
  throw Error("unknown dataset '" + name + "' (expected one of: fashion-mnist, cifar10)");
}

ImageDataset load_dataset(const std::string& name, const std::string& dir, bool train,
                          int64_t limit) {
  return scaled(load_dataset_pixels(name, dir, train, limit));
}

torch::Tensor shard_indices(int64_t n, int rank, int ranks, uint64_t seed) {
  SADDLE_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "bad shard: rank ", rank, " of ", ranks);
  SADDLE_CHECK(n >= ranks, "cannot shard ", n, " items over ", ranks, " ranks");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::Tensor order = torch::randperm(n, gen, torch::kInt64);
  const int64_t base = n / ranks, extra = n % ranks;
  const int64_t start = rank * base + std::min<int64_t>(rank, extra);
  const int64_t count = base + (rank < extra ? 1 : 0);
  return order.narrow(0, start, count).clone();
}

ImageDataset shard(const ImageDataset& data, int rank, int ranks, uint64_t seed) {
  return data.select(shard_indices(data.size(), rank, ranks, seed));
}

BatchSampler::BatchSampler(int64_t size) : size_(size) {
  SADDLE_CHECK(size > 0, "cannot draw batches from an empty dataset");
}

torch::Tensor BatchSampler::next_batch(int64_t batch_size, at::Generator& gen) {
  SADDLE_CHECK(batch_size > 0, "batch size must be positive, got ", batch_size);
  std::vector<torch::Tensor> parts;
  int64_t remaining = batch_size;
  while (remaining > 0) {
    if (epoch_ < 0 || position_ == size_) {
      order_ = torch::randperm(size_, gen, torch::kInt64);
      ++epoch_;
      position_ = 0;
    }
    const int64_t take = std::min(remaining, size_ - position_);
    parts.push_back(order_.narrow(0, position_, take));
    position_ += take;
    remaining -= take;
  }
  return parts.size() == 1 ? parts[0].clone() : torch::cat(parts);
}

torch::Tensor BatchSampler::state() const {
  torch::Tensor head = torch::tensor({size_, epoch_, position_}, torch::kInt64);
  return order_.defined() ? torch::cat({head, order_}) : head;
}

void BatchSampler::load_state(const torch::Tensor& state) {
  SADDLE_CHECK(state.dim() == 1 && state.numel() >= 3 && state.scalar_type() == torch::kInt64,
               "sampler state: expected int64 [3 + n], got ", state.sizes());
  torch::Tensor s = state.contiguous();
  const int64_t* v = s.data_ptr<int64_t>();
  SADDLE_CHECK(v[0] == size_, "sampler state is for ", v[0], " items, this sampler has ", size_);
  SADDLE_CHECK(v[2] >= 0 && v[2] <= size_, "sampler state: position ", v[2], " out of range");
  SADDLE_CHECK(s.numel() == 3 || s.numel() == 3 + size_, "sampler state: order has ", s.numel() - 3,
               " entries, expected ", size_);
  epoch_ = v[1];
  position_ = v[2];
  order_ = s.numel() > 3 ? s.narrow(0, 3, size_).clone() : torch::Tensor();
}

}  // namespace saddle
