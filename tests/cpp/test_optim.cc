// The fused optimizer updates (ops/optim.cc, kernels/cpu/optim.cc): five
// steps of every op and setting against torch.optim, in f64 and f32, on a
// small tensor and on one large enough to run in parallel; strided state;
// the autograd rules of in-place updates; the errors; and a small model
// trained end to end with apply_adam.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// ----------------------------------------------------------------- reference
// Values after 5 steps, produced with torch 2.15 (torch.optim, foreach=False,
// float64) by this script, whose gradient and schedule the Run below repeats:
//
//   p = torch.tensor(P0, requires_grad=True); opt = <optimizer>([p]); lr0 = <lr>
//   for t in range(5):
//       opt.param_groups[0]['lr'] = lr0 * (1 - 0.1 * t)
//       p.grad = 0.5 * p.detach() + torch.tensor([math.cos(1.1 * i + 0.5 * t) for i in range(6)])
//       opt.step()
//   print(p.tolist(), [opt.state[p][k].tolist() for k in slots])
const std::vector<double> kP0 = {0.5, -1.2, 0.8, 2.0, -0.3, 0.05};
using Ref = std::vector<double>;

// torch.optim.SGD(lr=0.1) and SGD(lr=0.1, weight_decay=0.1)
const Ref kSgdPlain = {0.23054550235719515, -0.8589435627252759, 0.9375876532131966, 1.770045926898842, -0.40338358537644553, -0.24282522696541597};
const Ref kSgdWd = {0.21856914910052785, -0.8185120788384462, 0.9063266223299487, 1.6987706200134718, -0.39280754563739984, -0.23964794111381413};
// SGD(lr=0.1, momentum=0.9): param, momentum_buffer
const Ref kMomPlain = {-0.2963281217109942, -0.5337093416369363, 1.1425717390580439, 1.6115952451164972, -0.41263149343467803, -0.6925349147434555};
const Ref kMomPlainBuf = {1.6412929505833662, -4.0085590243950255, -1.2188413079613354, 3.0290017606698214, 1.733202817883169, 2.4893744980801014};
// SGD(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05)
const Ref kMomDamp = {0.1312652919494301, -0.9295406075072122, 0.9198882830053443, 1.8229408687776973, -0.3085702351527621, -0.26116761242188863};
const Ref kMomDampBuf = {1.7358533912941128, -3.1481147227080295, -0.8756205246761936, 2.469269158729743, 1.0708324112916594, 2.1149425876102925};
// SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.1)
const Ref kMomNesterov = {-0.26422371562694685, -0.30561678381622753, 1.0766984525435241, 1.316261462102071, -0.48223750125084647, -0.6943416236705579};
const Ref kMomNesterovBuf = {0.8250090187731773, -3.602002470642188, -0.6142909000802187, 3.1528430515377144, 1.560462400572016, 1.644422281697878};
// Adagrad(lr=0.1): param, sum
const Ref kAdagradPlain = {0.30957847293456053, -0.8535204661103829, 1.0665753130864604, 1.6255723089870775, -0.365966430371887, -0.20709124666958564};
const Ref kAdagradPlainSum = {3.3505584724727546, 5.2328104080793185, 0.6079685543497543, 3.1250963166671584, 1.803187528782817, 2.7611569124186204};
// Adagrad(lr=0.2, weight_decay=0.1, lr_decay=0.05, eps=1e-6, initial_accumulator_value=0.1)
const Ref kAdagradAll = {0.15411055848171956, -0.6611858193597053, 1.093937067782958, 1.4888182965259504, -0.40349921365117075, -0.3934759933171154};
const Ref kAdagradAllSum = {3.4880578801990367, 5.597836941329214, 0.49342342130131733, 4.100522849493898, 1.8485695667884166, 2.406391121989099};
// RMSprop(lr=0.01): param, square_avg
const Ref kRmsPlain = {0.3092572240712555, -0.8530773651743759, 1.0669218356217756, 1.625344498177197, -0.3667206184296409, -0.2077575282843218};
const Ref kRmsPlainSq = {0.03243858242066689, 0.051834258765951324, 0.005941764616051392, 0.03109970835948369, 0.017822220990631386, 0.026923020737686366};
// RMSprop(lr=0.01, momentum=0.5): param, square_avg, momentum_buffer
const Ref kRmsMom = {0.17140040837978765, -0.6489228815353123, 1.2402561482311325, 1.4100569894449075, -0.36336640847615304, -0.3736800502244823};
const Ref kRmsMomSq = {0.03231167406742875, 0.04783155008299902, 0.005541595062999753, 0.027710791018766206, 0.01880011486820395, 0.025618965710447052};
const Ref kRmsMomBuf = {1.0995193273959296, -13.942027286957455, -3.8269378429506764, 16.471558849076793, 11.459595121516148, 6.175751520565527};
// RMSprop(lr=0.01, centered=True): param, square_avg, grad_avg
const Ref kRmsCen = {0.30775756544887745, -0.8496353071454785, 1.0692141328469655, 1.622294944636173, -0.366884630031431, -0.21038920270118627};
const Ref kRmsCenSq = {0.03242671635463175, 0.05175596190224287, 0.005928274853050098, 0.031045540180722718, 0.01782905487870005, 0.026888831413763723};
const Ref kRmsCenAvg = {0.0289779400658601, -0.04450796500112785, -0.013947352141249965, 0.029935375007299796, 0.017706903581700982, 0.034165128127066374};
// RMSprop(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.9, centered=True)
const Ref kRmsAll = {0.2887930167286089, -0.8945920400510783, 1.067184456699624, 1.6916762277896324, -0.2837871180554123, -0.20750457897291197};
const Ref kRmsAllSq = {0.27185469401987056, 0.6014580658550207, 0.03837490317726019, 0.4480191447772943, 0.16071288085295796, 0.2282218878765499};
const Ref kRmsAllBuf = {5.340497361216442, -12.053069074621774, -7.5672254324811465, 12.616848944788423, 4.47379361037618, 8.391073563636837};
const Ref kRmsAllAvg = {0.23753404232010233, -0.45675913579931915, -0.08651979382845129, 0.37162882628659794, 0.16405412955423535, 0.28439454057834057};
// Adam(lr=0.1): param, exp_avg, exp_avg_sq
const Ref kAdam = {0.13938183575777172, -0.8269587557716098, 1.1748928173231428, 1.6560068722137777, -0.2542391179883577, -0.34239640525808096};
const Ref kAdamM = {0.20096776422765, -0.39795418813727046, -0.1075138261616346, 0.28212434664628566, 0.1859922428335605, 0.267917093771976};
const Ref kAdamV = {0.0033399737366093395, 0.005230837336855879, 0.0006021925383792484, 0.0032114206057704217, 0.002021708968108775, 0.0026834417430145795};
// Adam(lr=0.1, weight_decay=0.1)
const Ref kAdamL2 = {0.13818447312828194, -0.8170244837823479, 1.157506580368067, 1.6167586415278405, -0.242922743250357, -0.34171519692514407};
const Ref kAdamL2M = {0.2135201260925071, -0.43834114594390744, -0.06778775925517963, 0.3523652890274282, 0.17888455570764908, 0.2618828836965875};
const Ref kAdamL2V = {0.003596848576550857, 0.00612547281691997, 0.00039039236295573956, 0.00433661260146531, 0.001985253529665929, 0.002617649032106646};
// AdamW(lr=0.1, weight_decay=0.1)
const Ref kAdamW = {0.12631306776235843, -0.7854697584303757, 1.1380212188362544, 1.583088897000914, -0.24649192420624813, -0.33810333654144836};
const Ref kAdamWM = {0.19933204034140212, -0.39346386776917486, -0.11109201088750736, 0.27441929402603293, 0.18686202773953584, 0.26807526635748957};
const Ref kAdamWV = {0.0033307692668180415, 0.005110202365070026, 0.0006196804271042257, 0.003052570838918593, 0.002034989099993589, 0.002684151463649069};
// Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True): + max_exp_avg_sq
const Ref kAms = {0.3223792603452396, -1.0043609856813225, 0.9876190913348909, 1.8064990494845412, -0.28183455905063043, -0.146248939468139};
const Ref kAmsM = {0.31508311825693486, -0.7721870639086499, -0.16732742260087624, 0.6123297317525285, 0.3296484684509673, 0.4496574476067133};
const Ref kAmsV = {0.03487238297128919, 0.06209947718781014, 0.0057165300907076515, 0.04179549637206154, 0.018275117699581525, 0.02876182016841948};
const Ref kAmsMax = {0.03487238297128919, 0.06209947718781014, 0.0057573357777139945, 0.04179549637206154, 0.018275117699581525, 0.02876182016841948};
// AdamW(lr=0.05, weight_decay=0.1, amsgrad=True)
const Ref kAmsW = {0.3088873360965981, -0.9915030051110778, 0.9717726292503294, 1.789504262694753, -0.26728387657536634, -0.14642498598195436};
const Ref kAmsWM = {0.2197368502366076, -0.414679737712761, -0.1289775993007006, 0.29607429767035104, 0.17709626378043844, 0.2881190041261069};
const Ref kAmsWV = {0.003439268924989654, 0.005693454377273383, 0.000725755190342971, 0.003506944349311833, 0.001902650664182604, 0.002951263938312245};
const Ref kAmsWMax = {0.003439268924989654, 0.005693454377273383, 0.000726246323340054, 0.003506944349311833, 0.001902650664182604, 0.002951263938312245};

// ------------------------------------------------------------------ harness

// One configuration of the reference run: param is P0 tiled `reps` times
// ([2 * reps, 3]); each element follows the 6-element reference, so a large
// `reps` checks the parallel path against the same numbers.
struct Run {
  Run(DType dt, double lr0, int64_t reps = 1) : dt(dt), lr0(lr0), reps(reps) {
    std::vector<double> p;
    for (int64_t r = 0; r < reps; ++r) p.insert(p.end(), kP0.begin(), kP0.end());
    param = tensor(p, {2 * reps, 3}).to(dt);
    lr = scalar(lr0, dt);
  }
  Tensor slot(double value = 0) const { return full_like(param, value); }
  Tensor step() const { return zeros({}, DType::i64); }

  // kSteps updates with the scheduled lr and grad = 0.5 * param + cos(1.1 i + 0.5 t).
  template <typename Update>
  void steps(Update update) {
    for (int t = 0; t < 5; ++t) {
      lr.fill_(lr0 * (1 - 0.1 * t));
      std::vector<double> g = param.to_vector<double>();
      for (size_t i = 0; i < g.size(); ++i)
        g[i] = 0.5 * g[i] + std::cos(1.1 * static_cast<double>(i % 6) + 0.5 * t);
      Tensor grad = tensor(g, param.shape()).to(dt);
      update(param, grad, lr);
    }
  }

  void expect(const Tensor& t, const Ref& ref, const char* what) const {
    std::vector<double> e;
    for (int64_t r = 0; r < reps; ++r) e.insert(e.end(), ref.begin(), ref.end());
    INFO(what << " (" << dtype_name(dt) << ", " << 6 * reps << " elements)");
    REQUIRE(t.dtype() == dt);
    bool f64 = dt == DType::f64;
    REQUIRE_CLOSE(t, tensor(e, t.shape()), f64 ? 1e-12 : 2e-5, f64 ? 1e-10 : 1e-4);
  }

  DType dt;
  double lr0;
  int64_t reps;
  Tensor param, lr;
};

// Sets the intra-op thread count for one scope, so the large runs split work
// across threads even on a one-core default.
struct ThreadsGuard {
  explicit ThreadsGuard(int n) : prev(get_num_threads()) { set_num_threads(n); }
  ~ThreadsGuard() { set_num_threads(prev); }
  int prev;
};

// (dtype, reps) pairs every reference test runs: 120000 elements are above
// the kernels' parallel grain.
const std::pair<DType, int64_t> kConfigs[] = {
    {DType::f64, 1}, {DType::f32, 1}, {DType::f64, 20000}, {DType::f32, 20000}};

}  // namespace

TEST_CASE("apply_sgd matches torch.optim.SGD", "[optim]") {
  ThreadsGuard threads(3);
  for (auto [dt, reps] : kConfigs) {
    Run plain(dt, 0.1, reps);
    plain.steps([](auto& p, auto& g, auto& lr) { apply_sgd(p, g, lr); });
    plain.expect(plain.param, kSgdPlain, "param");

    Run wd(dt, 0.1, reps);
    wd.steps([](auto& p, auto& g, auto& lr) { apply_sgd(p, g, lr, {.weight_decay = 0.1}); });
    wd.expect(wd.param, kSgdWd, "param (weight decay)");
  }
}

TEST_CASE("apply_momentum matches torch.optim.SGD with momentum, first step included", "[optim]") {
  ThreadsGuard threads(3);
  for (auto [dt, reps] : kConfigs) {
    Run plain(dt, 0.1, reps);
    Tensor buf = plain.slot(), step = plain.step();
    plain.steps([&](auto& p, auto& g, auto& lr) { apply_momentum(p, g, buf, step, lr, {.momentum = 0.9}); });
    plain.expect(plain.param, kMomPlain, "param");
    plain.expect(buf, kMomPlainBuf, "velocity");
    REQUIRE(step.item<int64_t>() == 5);

    // dampening only differs from zero-initialised velocity on the first step.
    Run damp(dt, 0.05, reps);
    Tensor buf2 = damp.slot(), step2 = damp.step();
    MomentumOptions o{.momentum = 0.9, .dampening = 0.3, .weight_decay = 0.05};
    damp.steps([&](auto& p, auto& g, auto& lr) { apply_momentum(p, g, buf2, step2, lr, o); });
    damp.expect(damp.param, kMomDamp, "param (dampening, weight decay)");
    damp.expect(buf2, kMomDampBuf, "velocity (dampening, weight decay)");

    Run nest(dt, 0.1, reps);
    Tensor buf3 = nest.slot(), step3 = nest.step();
    MomentumOptions on{.momentum = 0.8, .nesterov = true, .weight_decay = 0.1};
    nest.steps([&](auto& p, auto& g, auto& lr) { apply_momentum(p, g, buf3, step3, lr, on); });
    nest.expect(nest.param, kMomNesterov, "param (nesterov)");
    nest.expect(buf3, kMomNesterovBuf, "velocity (nesterov)");

    // momentum 0 is plain SGD, dampening ignored (torch.optim.SGD keeps no buffer then).
    Run zero(dt, 0.1, reps);
    Tensor buf4 = zero.slot(), step4 = zero.step();
    MomentumOptions oz{.momentum = 0, .dampening = 0.5};
    zero.steps([&](auto& p, auto& g, auto& lr) { apply_momentum(p, g, buf4, step4, lr, oz); });
    zero.expect(zero.param, kSgdPlain, "param (momentum 0)");
  }
}

TEST_CASE("apply_adagrad matches torch.optim.Adagrad", "[optim]") {
  ThreadsGuard threads(3);
  for (auto [dt, reps] : kConfigs) {
    Run plain(dt, 0.1, reps);
    Tensor acc = plain.slot(), step = plain.step();
    plain.steps([&](auto& p, auto& g, auto& lr) { apply_adagrad(p, g, acc, step, lr); });
    plain.expect(plain.param, kAdagradPlain, "param");
    plain.expect(acc, kAdagradPlainSum, "accum");
    REQUIRE(step.item<int64_t>() == 5);

    Run all(dt, 0.2, reps);
    Tensor acc2 = all.slot(0.1), step2 = all.step();  // initial_accumulator_value=0.1
    AdagradOptions o{.eps = 1e-6, .weight_decay = 0.1, .lr_decay = 0.05};
    all.steps([&](auto& p, auto& g, auto& lr) { apply_adagrad(p, g, acc2, step2, lr, o); });
    all.expect(all.param, kAdagradAll, "param (decay, lr_decay)");
    all.expect(acc2, kAdagradAllSum, "accum (decay, lr_decay)");
  }
}

TEST_CASE("apply_rmsprop matches torch.optim.RMSprop", "[optim]") {
  ThreadsGuard threads(3);
  for (auto [dt, reps] : kConfigs) {
    Run plain(dt, 0.01, reps);
    Tensor sq = plain.slot();
    plain.steps([&](auto& p, auto& g, auto& lr) { apply_rmsprop(p, g, sq, lr); });
    plain.expect(plain.param, kRmsPlain, "param");
    plain.expect(sq, kRmsPlainSq, "square_avg");

    Run mom(dt, 0.01, reps);
    Tensor sq2 = mom.slot(), buf2 = mom.slot();
    mom.steps([&](auto& p, auto& g, auto& lr) { apply_rmsprop(p, g, sq2, lr, {.momentum = 0.5}, buf2); });
    mom.expect(mom.param, kRmsMom, "param (momentum)");
    mom.expect(sq2, kRmsMomSq, "square_avg (momentum)");
    mom.expect(buf2, kRmsMomBuf, "momentum_buffer (momentum)");

    Run cen(dt, 0.01, reps);
    Tensor sq3 = cen.slot(), avg3 = cen.slot();
    cen.steps([&](auto& p, auto& g, auto& lr) { apply_rmsprop(p, g, sq3, lr, {.centered = true}, {}, avg3); });
    cen.expect(cen.param, kRmsCen, "param (centered)");
    cen.expect(sq3, kRmsCenSq, "square_avg (centered)");
    cen.expect(avg3, kRmsCenAvg, "grad_avg (centered)");

    Run all(dt, 0.01, reps);
    Tensor sq4 = all.slot(), buf4 = all.slot(), avg4 = all.slot();
    RMSPropOptions o{.alpha = 0.9, .eps = 1e-6, .weight_decay = 0.1, .momentum = 0.9, .centered = true};
    all.steps([&](auto& p, auto& g, auto& lr) { apply_rmsprop(p, g, sq4, lr, o, buf4, avg4); });
    all.expect(all.param, kRmsAll, "param (all options)");
    all.expect(sq4, kRmsAllSq, "square_avg (all options)");
    all.expect(buf4, kRmsAllBuf, "momentum_buffer (all options)");
    all.expect(avg4, kRmsAllAvg, "grad_avg (all options)");
  }
}

TEST_CASE("apply_adam matches torch.optim.Adam and AdamW", "[optim]") {
  ThreadsGuard threads(3);
  for (auto [dt, reps] : kConfigs) {
    struct Case {
      const char* name;
      double lr;
      AdamOptions o;
      const Ref &param, &m, &v;
      const Ref* max_v;
    };
    const Case cases[] = {
        {"Adam", 0.1, {}, kAdam, kAdamM, kAdamV, nullptr},
        {"Adam, weight decay", 0.1, {.weight_decay = 0.1}, kAdamL2, kAdamL2M, kAdamL2V, nullptr},
        {"AdamW", 0.1, {.weight_decay = 0.1, .decoupled_weight_decay = true}, kAdamW, kAdamWM, kAdamWV, nullptr},
        {"Adam, amsgrad", 0.05,
         {.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true},
         kAms, kAmsM, kAmsV, &kAmsMax},
        {"AdamW, amsgrad", 0.05, {.weight_decay = 0.1, .decoupled_weight_decay = true, .amsgrad = true},
         kAmsW, kAmsWM, kAmsWV, &kAmsWMax},
    };
    for (const Case& c : cases) {
      INFO(c.name);
      Run run(dt, c.lr, reps);
      Tensor m = run.slot(), v = run.slot(), step = run.step();
      Tensor max_v = c.max_v ? run.slot() : Tensor();
      run.steps([&](auto& p, auto& g, auto& lr) { apply_adam(p, g, m, v, step, lr, c.o, max_v); });
      run.expect(run.param, c.param, "param");
      run.expect(m, c.m, "m");
      run.expect(v, c.v, "v");
      if (c.max_v) run.expect(max_v, *c.max_v, "max_v");
      REQUIRE(step.item<int64_t>() == 5);
    }
  }
}

TEST_CASE("optimizer updates: f64 step counter, lr of another dtype", "[optim]") {
  Run run(DType::f32, 0.1);
  Tensor m = run.slot(), v = run.slot(), step = zeros({}, DType::f64);
  Tensor lr64 = scalar(0.1, DType::f64);
  run.steps([&](auto& p, auto& g, auto& lr) {
    lr64.fill_(lr.template item<double>());
    apply_adam(p, g, m, v, step, lr64);
  });
  run.expect(run.param, kAdam, "param");
  REQUIRE(step.item<double>() == 5.0);
}

TEST_CASE("optimizer updates work on strided views in place", "[optim]") {
  // param and the moments are every other column of larger buffers; grad is a
  // transposed view. Only the viewed elements may change.
  Tensor base = zeros({2, 6}, DType::f64), mbase = zeros({2, 6}, DType::f64);
  Tensor vbase = zeros({2, 6}, DType::f64);
  Tensor param = base.slice(1, 0, 6, 2), m = mbase.slice(1, 1, 6, 2), v = vbase.slice(1, 0, 6, 2);
  REQUIRE_FALSE(param.is_contiguous());
  param.copy_(tensor(kP0, {2, 3}));
  Tensor step = zeros({}, DType::i64), lr = scalar(0.1, DType::f64);
  for (int t = 0; t < 5; ++t) {
    lr.fill_(0.1 * (1 - 0.1 * t));
    std::vector<double> g = param.to_vector<double>();
    for (size_t i = 0; i < g.size(); ++i) g[i] = 0.5 * g[i] + std::cos(1.1 * static_cast<double>(i) + 0.5 * t);
    Tensor grad = tensor(g, {2, 3}).t().contiguous().t();
    REQUIRE_FALSE(grad.is_contiguous());
    apply_adam(param, grad, m, v, step, lr);
  }
  REQUIRE_CLOSE(param, tensor(kAdam, {2, 3}), 1e-12, 1e-10);
  REQUIRE_CLOSE(m, tensor(kAdamM, {2, 3}), 1e-12, 1e-10);
  REQUIRE_CLOSE(v, tensor(kAdamV, {2, 3}), 1e-12, 1e-10);
  REQUIRE_CLOSE(base.slice(1, 1, 6, 2), zeros({2, 3}, DType::f64), 0, 0);
  REQUIRE_CLOSE(mbase.slice(1, 0, 6, 2), zeros({2, 3}, DType::f64), 0, 0);
}

TEST_CASE("optimizer updates and autograd: refusal and version counters", "[optim]") {
  Tensor w = tensor(std::vector<double>{1.0, 2.0, 3.0}, {3}).set_requires_grad();
  Tensor g = ones({3}, DType::f64), lr = scalar(0.1, DType::f64);

  SECTION("a param that requires grad is refused in grad mode") {
    REQUIRE_THROWS_WITH(apply_sgd(w, g, lr), Catch::Contains("[apply_sgd]") &&
                                                 Catch::Contains("requires grad") &&
                                                 Catch::Contains("no_grad"));
    REQUIRE(w.to_vector<double>() == std::vector<double>{1.0, 2.0, 3.0});
    NoGradGuard no_grad;
    apply_sgd(w, g, lr);
    REQUIRE_CLOSE(w, tensor(std::vector<double>{0.9, 1.9, 2.9}, {3}), 1e-15, 0);
  }

  SECTION("updating a tensor that a backward still needs makes that backward fail") {
    Tensor y = (w * w).sum();  // mul saves w
    {
      NoGradGuard no_grad;
      Tensor m = zeros_like(w), v = zeros_like(w), step = zeros({}, DType::i64);
      apply_adam(w, g, m, v, step, lr);
    }
    REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("modified in place"));
  }

  SECTION("a mutated slot gets its version bumped as well") {
    Tensor c = zeros({3}, DType::f64).set_requires_grad();
    Tensor buf = zeros({3}, DType::f64), step = zeros({}, DType::i64);
    Tensor y = (c * buf).sum();  // mul saves buf for c's gradient
    {
      NoGradGuard no_grad;
      apply_momentum(w, g, buf, step, lr, {.momentum = 0.9});
    }
    REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("modified in place"));
  }
}

TEST_CASE("optimizer updates report bad inputs, naming the op", "[optim]") {
  Tensor p = zeros({2, 3}, DType::f64), g = ones({2, 3}, DType::f64);
  Tensor m = zeros({2, 3}, DType::f64), v = zeros({2, 3}, DType::f64);
  Tensor step = zeros({}, DType::i64), lr = scalar(0.1, DType::f64);
  auto adam = Catch::Contains("[apply_adam]");

  // shapes and dtypes
  REQUIRE_THROWS_AS(apply_adam(p, ones({3, 2}, DType::f64), m, v, step, lr), ShapeError);
  REQUIRE_THROWS_WITH(apply_adam(p, ones({3, 2}, DType::f64), m, v, step, lr),
                      adam && Catch::Contains("[3,2]") && Catch::Contains("[2,3]"));
  REQUIRE_THROWS_AS(apply_adam(p, g, m, zeros({6}, DType::f64), step, lr), ShapeError);
  REQUIRE_THROWS_AS(apply_adam(p, ones({2, 3}), m, v, step, lr), TypeError);
  REQUIRE_THROWS_WITH(apply_adam(p, ones({2, 3}), m, v, step, lr),
                      adam && Catch::Contains("f32") && Catch::Contains("f64"));
  REQUIRE_THROWS_AS(apply_adam(p, g, zeros({2, 3}), v, step, lr), TypeError);
  REQUIRE_THROWS_WITH(apply_adam(zeros({2, 3}, DType::i32), zeros({2, 3}, DType::i32),
                                 zeros({2, 3}, DType::i32), zeros({2, 3}, DType::i32), step, lr),
                      adam && Catch::Contains("i32"));
  REQUIRE_THROWS_AS(apply_adam(p, g, m, v, zeros({}, DType::f32), lr), TypeError);
  REQUIRE_THROWS_AS(apply_adam(p, g, m, v, zeros({2}, DType::i64), lr), ShapeError);
  REQUIRE_THROWS_WITH(apply_adam(p, g, m, v, step, full({3}, 0.1, DType::f64)),
                      adam && Catch::Contains("lr") && Catch::Contains("[3]"));
  REQUIRE_THROWS_AS(apply_adam(p, g, m, v, step, scalar(1.0, DType::i64)), TypeError);
  REQUIRE_THROWS_WITH(apply_adam(p, g, m, v, step, lr, {.amsgrad = true}),
                      adam && Catch::Contains("max_v") && Catch::Contains("amsgrad"));
  REQUIRE_THROWS_WITH(apply_rmsprop(p, g, m, lr, {.momentum = 0.9}),
                      Catch::Contains("[apply_rmsprop]") && Catch::Contains("momentum_buffer"));
  REQUIRE_THROWS_WITH(apply_sgd(p, zeros({2, 3}), lr), Catch::Contains("[apply_sgd]"));

  // hyperparameters
  REQUIRE_THROWS_WITH(apply_adam(p, g, m, v, step, lr, {.beta1 = 1.0}), adam && Catch::Contains("beta1"));
  REQUIRE_THROWS_AS(apply_adam(p, g, m, v, step, lr, {.eps = -1.0}), ValueError);
  REQUIRE_THROWS_AS(apply_adam(p, g, m, v, step, lr, {.weight_decay = NAN}), ValueError);
  REQUIRE_THROWS_WITH(apply_momentum(p, g, m, step, lr, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                      Catch::Contains("[apply_momentum]") && Catch::Contains("nesterov"));
  REQUIRE_THROWS_WITH(call_op(op_def("apply_momentum"), std::vector<Tensor>{p, g, m, step, lr}),
                      Catch::Contains("[apply_momentum]") && Catch::Contains("momentum"));
  REQUIRE_THROWS_WITH(call_op(op_def("apply_adam"), std::vector<Tensor>{p, g, m, v, Tensor::empty({0}, DType::f64), step, lr},
                              Attrs{{"beta_1", 0.5}}),
                      adam && Catch::Contains("beta_1"));

  // layouts an in-place update cannot honour
  REQUIRE_THROWS_WITH(apply_adam(p, g, m, m, step, lr), adam && Catch::Contains("share memory"));
  REQUIRE_THROWS_WITH(apply_adam(p, p, m, v, step, lr), adam && Catch::Contains("share memory"));
  Tensor row = zeros({1, 3}, DType::f64);
  REQUIRE_THROWS_WITH(apply_adam(row.expand({2, 3}), g, m, v, step, lr),
                      adam && Catch::Contains("broadcast view"));

  // a negative lr is refused, and a refused call changes nothing
  REQUIRE_THROWS_WITH(apply_adam(p, g, m, v, step, scalar(-0.1, DType::f64)),
                      adam && Catch::Contains("lr must be >= 0"));
  REQUIRE(step.item<int64_t>() == 0);
  REQUIRE_CLOSE(m, zeros({2, 3}, DType::f64), 0, 0);
  REQUIRE_CLOSE(p, zeros({2, 3}, DType::f64), 0, 0);
}

TEST_CASE("optimizer updates in a graph: one node, ordered after reads of its Variables", "[optim][graph]") {
  // The same API call adds a node when a graph is being built; param and the
  // slots are Variables, so the node updates the very buffers (DESIGN.md §5).
  Tensor w = zeros({2, 3}, DType::f64).mark_variable("w");
  Tensor m = zeros({2, 3}, DType::f64).mark_variable("m"), v = zeros({2, 3}, DType::f64).mark_variable("v");
  Tensor step = zeros({}, DType::i64).mark_variable("step"), lr = scalar(0.1, DType::f64).mark_variable("lr");
  Graph g;
  GraphScope scope(g);
  Tensor x = g.placeholder("x", {-1, 3}, DType::f64);
  Tensor read = matmul(x, w.t());  // reads w before the update
  Tensor grad = g.placeholder("grad", {2, -1}, DType::f64);  // unknown dims are accepted
  size_t before = g.num_nodes();
  apply_adam(w, grad, m, v, step, lr, {.amsgrad = false});
  const Node* update = nullptr;
  for (const Node* n : g.nodes())
    if (n->op->name() == "apply_adam") update = n;
  REQUIRE(update != nullptr);
  CHECK(update->outputs.empty());
  CHECK(update->attrs.get<double>("beta2") == 0.999);
  CHECK(g.num_nodes() > before);
  // The update waits for the earlier reader of w (write-after-read).
  const int64_t reader = g.edge(read).node;
  CHECK(std::find(update->control_inputs.begin(), update->control_inputs.end(), reader) !=
        update->control_inputs.end());
  // Bad shapes fail while building, naming the op.
  REQUIRE_THROWS_WITH(apply_adam(w, g.placeholder("bad", {3, 2}, DType::f64), m, v, step, lr),
                      Catch::Contains("[apply_adam]") && Catch::Contains("[3,2]"));
}

TEST_CASE("apply_adam trains a linear regression eagerly", "[optim]") {
  // y = x w* + b* + small noise; fit w, b by mean squared error.
  Generator gen(7);
  Tensor x = randn({128, 4}, DType::f32, &gen);
  Tensor w_true = tensor(std::vector<float>{1.5f, -2.0f, 0.5f, 3.0f}, {4, 1});
  Tensor y = matmul(x, w_true) + 0.7 + randn({128, 1}, DType::f32, &gen) * 0.01;

  Tensor w = zeros({4, 1}).set_requires_grad(), b = zeros({1}).set_requires_grad();
  Tensor mw = zeros_like(w), vw = zeros_like(w), mb = zeros_like(b), vb = zeros_like(b);
  Tensor step_w = zeros({}, DType::i64), step_b = zeros({}, DType::i64), lr = scalar(0.1);

  auto loss_fn = [&] { return mse_loss(matmul(x, w) + b, y); };
  const double first = loss_fn().item<double>();
  double last = first;
  for (int it = 0; it < 300; ++it) {
    w.zero_grad();
    b.zero_grad();
    Tensor loss = loss_fn();
    loss.backward();
    last = loss.item<double>();
    NoGradGuard no_grad;
    apply_adam(w, w.grad(), mw, vw, step_w, lr);
    apply_adam(b, b.grad(), mb, vb, step_b, lr);
  }
  INFO("loss " << first << " -> " << last);
  REQUIRE(first > 1.0);
  REQUIRE(last < 1e-3 * first);
  REQUIRE_CLOSE(w.detach(), w_true, 0.02, 0);
  REQUIRE(std::abs(b.item<double>() - 0.7) < 0.02);
  REQUIRE(step_w.item<int64_t>() == 300);
}
