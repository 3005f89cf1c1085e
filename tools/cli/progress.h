// Progress of long CLI jobs on stderr: on a terminal, one line redrawn in place (bar, count, rate, time
// left, a note); otherwise a plain line at each 10% once the job has run 2 s (short jobs stay quiet, logs
// stay readable). QTF_PROGRESS=0 turns it off, QTF_PROGRESS=1 forces the plain lines from the start.
#pragma once
#include <chrono>
#include <cstdint>

namespace qtf::cli {

class Progress {
 public:
  // what: the command ("qtf eval"); total: units of the whole job (over all its stages); unit: "tok".
  Progress(const char* what, int64_t total, const char* unit = "tok");
  ~Progress() { finish(false); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Starts a stage (one pass of a sweep): its units count on from where the last stage ended.
  void stage(const char* label);
  // True when update(stage_done) would show something now (cheap: call it per unit, and format the
  // note only when it is true).
  bool due(int64_t stage_done);
  // stage_done: units done in the current stage; note: short text shown after the numbers (may be null).
  void update(int64_t stage_done, const char* note = nullptr);
  // Ends the display (a final line on a terminal, a closing line if plain lines were printed). complete:
  // the job is done (the total was an estimate: it becomes the count done); false after an error.
  void finish(bool complete = true);

 private:
  enum class Mode { off, bar, lines };
  using Clock = std::chrono::steady_clock;
  void draw(bool final);
  double elapsed() const;

  Mode mode_ = Mode::off;
  const char* what_;
  const char* unit_;
  char label_[48] = {0};
  char note_[64] = {0};
  int64_t total_, base_ = 0, done_ = 0;
  int next_decile_ = 1;
  bool drawn_ = false, finished_ = false;
  Clock::time_point start_, last_;
};

}  // namespace qtf::cli
