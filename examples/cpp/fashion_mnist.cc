// Trains an MLP or a small CNN on Fashion-MNIST with the C++ nn API, eagerly
// or as a compiled (traced) training step, using only the installed package:
//
//   fashion_mnist [--model mlp|cnn] [--mode eager|graph] [--epochs N] [--batch-size B]
//                 [--optimizer sgd|adam|adamw|rmsprop|adagrad] [--lr X] [--momentum M]
//                 [--threads T] [--seed S] [--data-root DIR] [--limit N] [--min-accuracy A]
//
// It reads the four IDX files (gzip-compressed or not) from --data-root,
// checks them as a loader that trusts nothing (magic numbers, dimensions,
// sizes, labels, trailing bytes, gzip CRCs), and prints per epoch the mean
// training loss, the test accuracy and the training throughput. Exit status 1
// on bad data or when the final accuracy is below --min-accuracy.
#include <ndflow/ndflow.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ndflow;

namespace {

struct Options {
  std::string model = "mlp";
  std::string mode = "graph";
  int epochs = 3;
  int batch_size = 128;
  std::string optimizer = "sgd";
  double lr = 0.05;
  double momentum = 0.9;
  int threads = 2;
  uint64_t seed = 0;
  std::string data_root = "/usr/share/datasets/fashion-mnist";
  int64_t limit = 0;  // 0: the whole training set
  double min_accuracy = 0;
};

void usage() {
  std::puts(
      "usage: fashion_mnist [--model mlp|cnn] [--mode eager|graph] [--epochs N] [--batch-size B]\n"
      "                     [--optimizer sgd|adam|adamw|rmsprop|adagrad] [--lr X] [--momentum M]\n"
      "                     [--threads T] [--seed S] [--data-root DIR] [--limit N] [--min-accuracy A]\n"
      "Trains on Fashion-MNIST and prints per-epoch loss, test accuracy and samples/s.\n"
      "  --model      mlp: 784-256-128-10; cnn: conv32-relu-pool-conv64-relu-pool-fc128-fc10 (default mlp)\n"
      "  --mode       graph: the training step is traced once and compiled (default); eager: op by op\n"
      "  --limit      train on the first N images only (quick runs)\n"
      "  --min-accuracy  exit 1 if the final test accuracy (0..1) is lower");
}

[[noreturn]] void die_usage(const std::string& msg) {
  std::fprintf(stderr, "fashion_mnist: %s\n", msg.c_str());
  usage();
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die_usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--model") o.model = value();
      else if (a == "--mode") o.mode = value();
      else if (a == "--epochs") o.epochs = std::stoi(value());
      else if (a == "--batch-size") o.batch_size = std::stoi(value());
      else if (a == "--optimizer") o.optimizer = value();
      else if (a == "--lr") o.lr = std::stod(value());
      else if (a == "--momentum") o.momentum = std::stod(value());
      else if (a == "--threads") o.threads = std::stoi(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--data-root") o.data_root = value();
      else if (a == "--limit") o.limit = std::stoll(value());
      else if (a == "--min-accuracy") o.min_accuracy = std::stod(value());
      else if (a == "-h" || a == "--help") { usage(); std::exit(0); }
      else die_usage("unknown option " + a);
    } catch (const std::logic_error&) {
      die_usage("bad value for " + a);
    }
  }
  if (o.model != "mlp" && o.model != "cnn") die_usage("--model must be mlp or cnn");
  if (o.mode != "eager" && o.mode != "graph") die_usage("--mode must be eager or graph");
  const char* opts[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
  if (std::find(std::begin(opts), std::end(opts), o.optimizer) == std::end(opts))
    die_usage("--optimizer must be one of sgd, adam, adamw, rmsprop, adagrad");
  if (o.epochs < 1 || o.batch_size < 1 || o.threads < 1 || o.limit < 0 || !(o.lr > 0) || !(o.momentum >= 0))
    die_usage("--epochs, --batch-size and --threads must be >= 1, --limit >= 0, --lr > 0, --momentum >= 0");
  return o;
}

// ------------------------------------------------------------ IDX loading

class DataError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An IDX file of unsigned bytes: dims (big-endian u32 each) and the values.
struct Idx {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// Reads `path` (gzip or plain: zlib reads either) completely, so the gzip
// CRC and length are checked, and validates the header against `ndim`.
Idx read_idx(const std::string& path, int ndim) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw DataError("cannot open " + path);
  struct Closer {
    gzFile f;
    ~Closer() {
      if (f) gzclose(f);
    }
  } closer{f};
  auto read_exact = [&](void* buf, size_t n, const char* what) {
    auto* p = static_cast<unsigned char*>(buf);
    while (n > 0) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
      int got = gzread(f, p, chunk);
      if (got < 0) {
        int err = 0;
        const char* msg = gzerror(f, &err);
        throw DataError(path + ": corrupt data while reading the " + what + " (" + msg + ")");
      }
      if (got == 0) throw DataError(path + ": file ends inside the " + what);
      p += got;
      n -= static_cast<size_t>(got);
    }
  };
  unsigned char magic[4];
  read_exact(magic, 4, "header");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08)
    throw DataError(path + ": not an IDX file of unsigned bytes (magic " + std::to_string(magic[0]) + " " +
                    std::to_string(magic[1]) + " " + std::to_string(magic[2]) + ")");
  if (magic[3] != ndim)
    throw DataError(path + ": expected " + std::to_string(ndim) + " dimensions, the header says " +
                    std::to_string(magic[3]));
  Idx idx;
  uint64_t total = 1;
  for (int d = 0; d < ndim; ++d) {
    unsigned char b[4];
    read_exact(b, 4, "header");
    uint64_t v = (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    if (v == 0) throw DataError(path + ": dimension " + std::to_string(d) + " is 0");
    total *= v;
    if (total > (uint64_t{1} << 32)) throw DataError(path + ": implausibly large (over 4 GiB of values)");
    idx.dims.push_back(static_cast<int64_t>(v));
  }
  idx.data.resize(total);
  read_exact(idx.data.data(), total, "values");
  unsigned char extra;
  int more = gzread(f, &extra, 1);
  if (more < 0) throw DataError(path + ": corrupt data at the end of the file (bad gzip checksum?)");
  if (more > 0) throw DataError(path + ": trailing bytes after the " + std::to_string(total) + " values");
  int rc = gzclose(f);
  closer.f = nullptr;
  if (rc != Z_OK) throw DataError(path + ": gzip stream error when closing (" + std::to_string(rc) + ")");
  return idx;
}

struct Split {
  std::vector<uint8_t> images;  // [n, 28, 28]
  std::vector<int64_t> labels;
  int64_t n = 0;
};

std::string find_file(const std::string& root, const std::string& base) {
  for (const std::string& name : {base + ".gz", base}) {
    std::string p = root + "/" + name;
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
      std::fclose(f);
      return p;
    }
  }
  throw DataError("missing " + root + "/" + base + "[.gz] (the Fashion-MNIST IDX files; see --data-root)");
}

Split load_split(const std::string& root, bool train) {
  std::string prefix = train ? "train" : "t10k";
  std::string ipath = find_file(root, prefix + "-images-idx3-ubyte");
  std::string lpath = find_file(root, prefix + "-labels-idx1-ubyte");
  Idx im = read_idx(ipath, 3), lb = read_idx(lpath, 1);
  if (im.dims[1] != 28 || im.dims[2] != 28)
    throw DataError(ipath + ": images are " + std::to_string(im.dims[1]) + "x" + std::to_string(im.dims[2]) +
                    ", expected 28x28");
  if (im.dims[0] != lb.dims[0])
    throw DataError(ipath + " has " + std::to_string(im.dims[0]) + " images but " + lpath + " has " +
                    std::to_string(lb.dims[0]) + " labels");
  Split s;
  s.n = im.dims[0];
  s.images = std::move(im.data);
  s.labels.resize(static_cast<size_t>(s.n));
  for (int64_t i = 0; i < s.n; ++i) {
    uint8_t v = lb.data[static_cast<size_t>(i)];
    if (v > 9) throw DataError(lpath + ": label " + std::to_string(v) + " at index " + std::to_string(i) +
                               " is not a class 0..9");
    s.labels[static_cast<size_t>(i)] = v;
  }
  return s;
}

// Images idx[from..to) as f32 [n, 1, 28, 28], normalized with the training
// set's mean and std (0.2860, 0.3530) as the Python example does, and their labels.
void make_batch(const Split& s, const std::vector<int64_t>& order, size_t from, size_t to, Tensor& x, Tensor& y) {
  const int64_t n = static_cast<int64_t>(to - from), pixels = 28 * 28;
  x = Tensor::empty({n, 1, 28, 28}, DType::f32);
  y = Tensor::empty({n}, DType::i64);
  float* xp = x.data<float>();
  int64_t* yp = y.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = order[from + static_cast<size_t>(i)];
    const uint8_t* src = s.images.data() + k * pixels;
    for (int64_t j = 0; j < pixels; ++j) xp[i * pixels + j] = (static_cast<float>(src[j]) * (1.0f / 255.0f) - 0.2860f) / 0.3530f;
    yp[i] = s.labels[static_cast<size_t>(k)];
  }
}

// ------------------------------------------------------------------ models

std::shared_ptr<nn::Sequential> make_model(const std::string& kind) {
  using namespace nn;
  if (kind == "mlp")
    return std::make_shared<Sequential>(std::make_shared<Flatten>(), std::make_shared<Linear>(784, 256),
                                        std::make_shared<ReLU>(), std::make_shared<Linear>(256, 128),
                                        std::make_shared<ReLU>(), std::make_shared<Linear>(128, 10));
  // 28 -> conv3 26 -> pool 13 -> conv3 11 -> pool 5: 64 * 5 * 5 features.
  return std::make_shared<Sequential>(
      std::make_shared<Conv2d>(1, 32, 3), std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2),
      std::make_shared<Conv2d>(32, 64, 3), std::make_shared<ReLU>(), std::make_shared<MaxPool2d>(2),
      std::make_shared<Flatten>(), std::make_shared<Linear>(64 * 5 * 5, 128), std::make_shared<ReLU>(),
      std::make_shared<Linear>(128, 10));
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Options& o, const std::vector<Tensor>& params) {
  if (o.optimizer == "sgd") return std::make_unique<optim::SGD>(params, optim::SGD::Options{.lr = o.lr, .momentum = o.momentum});
  if (o.optimizer == "adam") return std::make_unique<optim::Adam>(params, optim::Adam::Options{.lr = o.lr});
  if (o.optimizer == "adamw") return std::make_unique<optim::AdamW>(params, optim::AdamW::Options{.lr = o.lr});
  if (o.optimizer == "rmsprop")
    return std::make_unique<optim::RMSprop>(params, optim::RMSprop::Options{.lr = o.lr, .momentum = o.momentum});
  return std::make_unique<optim::Adagrad>(params, optim::Adagrad::Options{.lr = o.lr});
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse(argc, argv);
  try {
    Split train = load_split(opt.data_root, true);
    Split test = load_split(opt.data_root, false);
    if (opt.limit > 0 && opt.limit < train.n) train.n = opt.limit;

    set_num_threads(opt.threads);
    manual_seed(opt.seed);
    auto model = make_model(opt.model);
    auto optimizer = make_optimizer(opt, model->parameters());
    const bool graph = opt.mode == "graph";
    nn::FunctionOptions fopts;
    fopts.session.inter_op_threads = 1;
    fopts.session.intra_op_threads = opt.threads;

    // The training step, written once; TrainStep compiles it in graph mode.
    nn::TrainStep step([&](const Tensor& x, const Tensor& y) { return cross_entropy((*model)(x), y); },
                       *optimizer, graph, fopts);
    auto predict_fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{argmax((*model)(in[0]), 1)}; };
    nn::Function predict_compiled(predict_fn, fopts);
    auto predict = [&](const Tensor& x) {
      if (graph) return predict_compiled({x})[0];
      NoGradGuard no_grad;
      return predict_fn({x})[0];
    };

    auto test_accuracy = [&] {
      model->eval();
      int64_t correct = 0;
      std::vector<int64_t> order(static_cast<size_t>(test.n));
      std::iota(order.begin(), order.end(), 0);
      for (int64_t i = 0; i < test.n; i += 1000) {
        size_t to = static_cast<size_t>(std::min<int64_t>(i + 1000, test.n));
        Tensor x, y;
        make_batch(test, order, static_cast<size_t>(i), to, x, y);
        auto pred = predict(x).to_vector<int64_t>();
        auto labels = y.to_vector<int64_t>();
        for (size_t k = 0; k < pred.size(); ++k) correct += pred[k] == labels[k];
      }
      model->train();
      return static_cast<double>(correct) / static_cast<double>(test.n);
    };

    std::printf("Fashion-MNIST %s | mode %s | %s lr %g | batch %d | %d threads | seed %llu | %lld training images\n",
                opt.model == "mlp" ? "MLP 784-256-128-10" : "CNN conv32-pool-conv64-pool-fc128-fc10",
                opt.mode.c_str(), opt.optimizer.c_str(), opt.lr, opt.batch_size, opt.threads,
                static_cast<unsigned long long>(opt.seed), static_cast<long long>(train.n));
    std::mt19937_64 rng(opt.seed);
    std::vector<int64_t> order(static_cast<size_t>(train.n));
    double accuracy = 0;
    for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      double loss_sum = 0;
      auto start = std::chrono::steady_clock::now();
      int64_t batches = 0;
      for (size_t from = 0; from < order.size(); from += static_cast<size_t>(opt.batch_size)) {
        size_t to = std::min(order.size(), from + static_cast<size_t>(opt.batch_size));
        Tensor x, y;
        make_batch(train, order, from, to, x, y);
        loss_sum += step(x, y).item<double>();
        ++batches;
      }
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      accuracy = test_accuracy();
      std::printf("epoch %d  loss %.4f  test accuracy %.2f%%  %.0f samples/s\n", epoch,
                  loss_sum / static_cast<double>(batches), 100 * accuracy, static_cast<double>(train.n) / secs);
      std::fflush(stdout);
    }
    if (graph)
      std::printf("compiled: training step traced %d time(s), prediction %d time(s)\n",
                  step.function()->trace_count(), predict_compiled.trace_count());
    if (accuracy < opt.min_accuracy) {
      std::fprintf(stderr, "fashion_mnist: test accuracy %.2f%% is below --min-accuracy %.2f%%\n", 100 * accuracy,
                   100 * opt.min_accuracy);
      return 1;
    }
    return 0;
  } catch (const DataError& e) {
    std::fprintf(stderr, "fashion_mnist: bad data: %s\n", e.what());
    return 1;
  } catch (const ndflow::Error& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return 1;
  }
}
