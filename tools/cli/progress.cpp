#include "progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qtf::cli {

namespace {
// "1:05" or "1:02:03"
void fmt_time(double s, char* out, size_t n) {
  if (!(s >= 0) || s > 360000) {
    std::snprintf(out, n, "--:--");
    return;
  }
  int t = (int)(s + 0.5);
  if (t >= 3600) std::snprintf(out, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(out, n, "%d:%02d", t / 60, t % 60);
}
}  // namespace

Progress::Progress(const char* what, int64_t total, const char* unit)
    : what_(what), unit_(unit), total_(total > 0 ? total : 1), start_(Clock::now()), last_(start_) {
  const char* env = std::getenv("QTF_PROGRESS");
  if (env && !std::strcmp(env, "0")) mode_ = Mode::off;
  else if (env && !std::strcmp(env, "1")) mode_ = Mode::lines;
  else mode_ = isatty(STDERR_FILENO) ? Mode::bar : Mode::lines;
  if (!(env && !std::strcmp(env, "1")) && mode_ == Mode::lines) next_decile_ = -1;  // quiet for the first 2 s
}

double Progress::elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

void Progress::stage(const char* label) {
  base_ = done_;
  std::snprintf(label_, sizeof label_, "%s", label ? label : "");
}

bool Progress::due(int64_t stage_done) {
  if (mode_ == Mode::off || finished_) return false;
  if (mode_ == Mode::bar) return Clock::now() - last_ >= std::chrono::milliseconds(100);
  if (next_decile_ < 0) {  // lines in a log: quiet for the first 2 s
    if (elapsed() < 2.0) return false;
    next_decile_ = (int)(10 * done_ / total_) + 1;
  }
  return next_decile_ <= 10 && 10 * (base_ + stage_done) >= next_decile_ * total_;  // passed the next 10%
}

void Progress::update(int64_t stage_done, const char* note) {
  done_ = base_ + stage_done;
  if (done_ > total_) done_ = total_;
  if (note) std::snprintf(note_, sizeof note_, "%s", note);
  if (mode_ == Mode::bar) {
    draw(false);
    last_ = Clock::now();
  } else if (mode_ == Mode::lines && next_decile_ > 0 && 10 * done_ >= next_decile_ * total_) {
    draw(false);
    next_decile_ = (int)(10 * done_ / total_) + 1;
  }
}

void Progress::draw(bool final) {
  const double t = elapsed();
  const double rate = t > 0 ? (double)done_ / t : 0;
  char eta[48], took[48];
  fmt_time(rate > 0 ? (double)(total_ - done_) / rate : -1, eta, sizeof eta);
  fmt_time(t, took, sizeof took);
  const int pct = (int)(100 * done_ / total_);
  if (mode_ == Mode::bar) {
    const int width = 24, fill = (int)(width * done_ / total_);
    std::fprintf(stderr, "\r%-20.20s [%.*s%*s] %3d%% %lld/%lld %s  %.0f %s/s  %s %s  %s\x1b[K", label_[0] ? label_ : what_,
                 fill, "########################", width - fill, "", pct, (long long)done_, (long long)total_, unit_,
                 rate, unit_, final ? "took" : "ETA", final ? took : eta, note_);
  } else {
    std::fprintf(stderr, "%s: %3d%% (%lld/%lld %s), %.0f %s/s, %s %s%s%s%s%s\n", what_, pct, (long long)done_,
                 (long long)total_, unit_, rate, unit_, final ? "took" : "ETA", final ? took : eta,
                 label_[0] ? ", " : "", label_, note_[0] ? ", " : "", note_);
  }
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish(bool complete) {
  if (finished_) return;
  finished_ = true;
  if (complete && done_ > 0) total_ = done_;
  if (mode_ == Mode::bar) {
    draw(true);
    std::fputc('\n', stderr);
  } else if (mode_ == Mode::lines && drawn_) {
    draw(true);
  }
}

}  // namespace qtf::cli
