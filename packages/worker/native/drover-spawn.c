/*
 * drover-spawn: the worker agent's spawn helper, native.
 *
 * Speaks the protocol of the Node helper in spawn-helper.ts, with requests framed in binary:
 *
 *   in (stdin), one frame per request, integers little-endian u32:
 *     length of the rest, id, flags, argc, envc, then NUL-terminated strings.
 *     A spawn (flags 1: the output is a FIFO, opened read-write; else a log file, opened to
 *     append): strings exe, cwd, out, argc arguments (argv[0] is exe), envc "NAME=VALUE".
 *     A pump (flags 0x100, id the process's pid, argc and envc 0): strings FIFO, log, the
 *     log's cap in bytes (0: never rotated), files kept. A rotation's go-ahead (flags 0x200,
 *     id the pid): no strings.
 *   out (stdout), one JSON line each:
 *     {"ready":1}                                   once, at start
 *     {"id":N,"pid":P,"startTicks":T,"coreLimit":C}  spawned (T and C read from /proc, or null)
 *     {"id":N,"error":{"code":"ENOENT","message":"spawn EXE ENOENT"}}
 *     {"exit":P,"code":N|null,"signal":"SIGKILL"|null}
 *     {"pump":P,"open":1}         pumping (the agent may close the read end it held)
 *     {"pump":P,"rotate":1}       its log is due to rotate: paused until the go-ahead
 *     {"pump":P,"full":1}         the disk is full: output is read and counted, not written
 *     {"pump":P,"resumed":BYTES}  written again, after a line saying BYTES were not
 *     {"pump":P,"error":"TEXT"}   a write failed (not for space); the chunk is dropped
 *     {"pump":P,"failed":"TEXT"}  could not start (FIFO or log would not open): not pumping
 *     {"pump":P,"end":1}          every writer closed the FIFO, its output is all in the log,
 *                                 and the FIFO is removed
 *
 * Each process is started with posix_spawn, which glibc does with clone(CLONE_VM|CLONE_VFORK):
 * no page tables are copied, where a fork of even a small Node process copies tens of MiB of
 * them (0.3 ms a spawn here against 4 ms for Node's child_process.spawn). The child starts a
 * session of its own (as Node's detached: true), its signal dispositions at their defaults and
 * none blocked, stdin /dev/null, stdout and stderr the output file; every descriptor of ours is
 * close-on-exec. The helper ends when its stdin closes; its children live on, re-parented.
 *
 * It also carries processes' output from their FIFOs into their logs (log-pump.ts says how,
 * and does the same in the agent where this helper cannot run). Here the bytes move in the
 * kernel, splice(2) from the FIFO to the log: a byte leaves the FIFO only as it lands in the
 * file, so no kill of the agent or of this helper loses output on its way (a read, then a
 * write, loses what was read when the kill lands between the two). Near the cap, where a
 * rotation must cut at a line end, tee(2) copies the next bytes out to be looked at, still
 * unconsumed, and exactly the bytes that belong in this file are then spliced.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A request larger than this is not ours: the helper ends (the agent starts another). */
#define MAX_FRAME (512u * 1024u * 1024u)

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ETXTBSY: return "ETXTBSY";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case ENXIO: return "ENXIO";
    case ELIBBAD: return "ELIBBAD";
    case EDQUOT: return "EDQUOT";
    default: return NULL;
  }
}

static const char *signal_name(int s) {
  static const char *names[] = {
      NULL, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
      "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
      "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
      "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS"};
  return s > 0 && s < (int)(sizeof names / sizeof names[0]) ? names[s] : NULL;
}

/* Writes all of a line; the agent gone (EPIPE) ends the helper. */
static void say(const char *line, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, line, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      exit(0);
    }
    line += w;
    n -= (size_t)w;
  }
}

/* Appends s to out as a JSON string's contents (quotes, backslashes and controls escaped). */
static size_t json_text(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = 0;
  return n;
}

static void say_error(uint32_t id, int e, const char *exe) {
  char code[32];
  const char *name = errno_name(e);
  if (name) snprintf(code, sizeof code, "%s", name);
  else snprintf(code, sizeof code, "E%d", e);
  char exe_text[1024];
  json_text(exe_text, sizeof exe_text, exe);
  char line[1400];
  int n = snprintf(line, sizeof line, "{\"id\":%u,\"error\":{\"code\":\"%s\",\"message\":\"spawn %s %s\"}}\n", id, code, exe_text, code);
  if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
  say(line, (size_t)n);
}

/* Reads a small /proc file whole; its length, or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  return (ssize_t)n;
}

/* The process's start time in clock ticks (field 22 of /proc/PID/stat), or -1. */
static long long start_ticks(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (read_proc(path, buf, sizeof buf) <= 0) return -1;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2; /* field 3, the state */
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return -1;
    p++;
  }
  return strtoll(p, NULL, 10);
}

/* Its soft core-dump limit from /proc/PID/limits: bytes, -1 for unlimited, -2 unknown. */
static long long core_limit(pid_t pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
  if (read_proc(path, buf, sizeof buf) <= 0) return -2;
  char *p = strstr(buf, "\nMax core file size");
  if (!p) return -2;
  p += strlen("\nMax core file size");
  while (*p == ' ') p++;
  if (strncmp(p, "unlimited", 9) == 0) return -1;
  if (*p < '0' || *p > '9') return -2;
  return strtoll(p, NULL, 10);
}

static uint32_t u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Takes the next NUL-terminated string of [*p, end); NULL when there is none. */
static char *next_string(char **p, char *end) {
  char *s = *p;
  char *nul = s < end ? memchr(s, 0, (size_t)(end - s)) : NULL;
  if (!nul) return NULL;
  *p = nul + 1;
  return s;
}

/* ------------------------------------------------------------------------------------------
 * Pumps: each process's FIFO into its log (see the top of this file and log-pump.ts).
 */

/* The most looked at (tee'd and read) at once near the cap: one read of the Node pump. */
#define PUMP_LOOK (64 * 1024)
/* A line under way at the cap is finished in its file when it ends within this much past it. */
#define LINE_SLACK (16 * 1024)
/* A full disk: output is read and counted, and writing is tried again this often. */
#define RETRY_FULL_MS 5000
/* Bytes moved for one pump before the others get their turn. */
#define PUMP_TURN (1024 * 1024)

struct pump {
  pid_t pid;
  int in;  /* the FIFO's read end */
  int out; /* the log, written at `size` (splice cannot write to an O_APPEND file) */
  char *fifo, *log;
  loff_t size;
  long long max;
  int keep;
  int paused; /* asked the agent to rotate; waits for its go-ahead */
  int full;
  long long dropped, retry_at;
  struct pump *next;
};

static struct pump *pumps;
static int epfd = -1;
/* A pipe that tee copies the bytes to be looked at into; they are read out at once. */
static int look_pipe[2] = {-1, -1};
static unsigned char look[PUMP_LOOK];

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void say_pump(pid_t pid, const char *what, const char *text) {
  char body[1100], line[1200];
  json_text(body, sizeof body, text);
  int n = snprintf(line, sizeof line, "{\"pump\":%d,\"%s\":\"%s\"}\n", (int)pid, what, body);
  if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
  say(line, (size_t)n);
}

static void say_pump_number(pid_t pid, const char *what, long long value) {
  char line[96];
  int n = snprintf(line, sizeof line, "{\"pump\":%d,\"%s\":%lld}\n", (int)pid, what, value);
  say(line, (size_t)n);
}

static void say_pump_errno(pid_t pid, const char *what, const char *doing, const char *path, int e) {
  char text[1024];
  const char *name = errno_name(e);
  snprintf(text, sizeof text, "%s %s: %s (%s)", doing, path, strerror(e), name ? name : "?");
  say_pump(pid, what, text);
}

/* A paused pump is out of the set: a FIFO without writers is always ready (EPOLLHUP). */
static void watch_pump(struct pump *p, int on) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
  epoll_ctl(epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, p->in, &ev);
}

static struct pump *find_pump(pid_t pid) {
  for (struct pump *p = pumps; p; p = p->next)
    if (p->pid == pid) return p;
  return NULL;
}

static void free_pump(struct pump *p) {
  for (struct pump **at = &pumps; *at; at = &(*at)->next) {
    if (*at != p) continue;
    *at = p->next;
    break;
  }
  if (!p->paused) epoll_ctl(epfd, EPOLL_CTL_DEL, p->in, NULL);
  close(p->in);
  if (p->out >= 0) close(p->out);
  free(p->fifo);
  free(p->log);
  free(p);
}

static int open_log(struct pump *p) {
  /* Read-write: its last byte is read back (does the file end mid-line?). */
  p->out = open(p->log, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (p->out < 0) return -1;
  struct stat st;
  p->size = fstat(p->out, &st) == 0 ? st.st_size : 0;
  return 0;
}

/* The log does not end at a line end (its last byte, read back). */
static int mid_line(struct pump *p) {
  unsigned char c;
  return p->size > 0 && pread(p->out, &c, 1, p->size - 1) == 1 && c != '\n';
}

static void pump_turn(struct pump *p, uint32_t events);

static void start_pump(pid_t pid, const char *fifo, const char *log, long long max, int keep) {
  struct pump *old = find_pump(pid);
  if (old) free_pump(old);
  struct pump *p = calloc(1, sizeof *p);
  if (!p) {
    say_pump(pid, "failed", "out of memory");
    return;
  }
  p->pid = pid;
  p->max = max;
  p->keep = keep;
  p->out = -1;
  p->fifo = strdup(fifo);
  p->log = strdup(log);
  p->in = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (!p->fifo || !p->log || p->in < 0) {
    say_pump_errno(pid, "failed", "could not open the log pipe", fifo, p->in < 0 ? errno : ENOMEM);
    goto fail;
  }
  if (open_log(p) < 0) {
    say_pump_errno(pid, "failed", "could not open the log", log, errno);
    goto fail;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->in, &ev) < 0) {
    say_pump_errno(pid, "failed", "could not watch the log pipe", fifo, errno);
    goto fail;
  }
  p->next = pumps;
  pumps = p;
  /* The agent held a read end of its own until now (a FIFO nobody has open drops its bytes). */
  say_pump_number(pid, "open", 1);
  /* Every writer may be gone already, and epoll would not say so (see at_end). */
  pump_turn(p, 0);
  return;
fail:
  if (p->in >= 0) close(p->in);
  if (p->out >= 0) close(p->out);
  free(p->fifo);
  free(p->log);
  free(p);
}

/* Writes all of `data` at the end of the log (the note after a full disk); 0, or -1 with errno. */
static int append(struct pump *p, const char *data, size_t n) {
  while (n > 0) {
    ssize_t w = pwrite(p->out, data, n, p->size);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p->size += w;
    data += w;
    n -= (size_t)w;
  }
  return 0;
}

static void went_full(struct pump *p) {
  p->full = 1;
  p->retry_at = now_ms() + RETRY_FULL_MS;
  say_pump_number(p->pid, "full", 1);
}

/* After a full disk: a line saying what was lost, then logging as before. 1 once resumed. */
static int try_resume(struct pump *p) {
  char note[160];
  int n = snprintf(note, sizeof note, "%s[drover] %lld bytes of output were not logged: the disk was full\n", mid_line(p) ? "\n" : "", p->dropped);
  if (p->out < 0 || append(p, note, (size_t)n) < 0) {
    p->retry_at = now_ms() + RETRY_FULL_MS;
    return 0;
  }
  say_pump_number(p->pid, "resumed", p->dropped);
  p->full = 0;
  p->dropped = 0;
  return 1;
}

/* Reads up to `n` bytes out of the FIFO and counts them lost; what was read, 0 at none, -1 on error. */
static ssize_t drop(struct pump *p, size_t n) {
  ssize_t r = read(p->in, look, n < sizeof look ? n : sizeof look);
  if (r > 0) p->dropped += r;
  return r;
}

/*
 * Moves exactly `n` bytes (there in the FIFO: counted, or seen by tee) into the log. 0, or -1
 * with errno: what was written before an error is consumed, the rest stays in the FIFO.
 */
static int move(struct pump *p, size_t n) {
  while (n > 0) {
    ssize_t m = splice(p->in, NULL, p->out, &p->size, n, SPLICE_F_NONBLOCK);
    if (m < 0 && errno == EINTR) continue;
    if (m < 0) return -1;
    if (m == 0) return 0; /* no writer, and nothing left (cannot be: the bytes were counted) */
    n -= (size_t)m;
  }
  return 0;
}

/* A write that failed: a full disk makes the pump count output until it can write again. */
static void write_failed(struct pump *p, int e, size_t pending) {
  if (e == ENOSPC || e == EDQUOT) {
    went_full(p);
    return;
  }
  say_pump_errno(p->pid, "error", "could not write the log", p->log, e);
  /* The chunk is dropped (not counted as a full disk's), as the Node pump drops a chunk whose
     write threw. */
  if (read(p->in, look, pending < sizeof look ? pending : sizeof look) < 0) { /* gone meanwhile */ }
}

static void ask_rotation(struct pump *p) {
  p->paused = 1;
  watch_pump(p, 0);
  say_pump_number(p->pid, "rotate", 1);
}

/*
 * The log past its cap: up to the last line end that fits stays in this file, then a rotation.
 * 0, or -1 when the bytes could not be looked at (the turn ends; the next wakeup tries again).
 */
static int near_cap(struct pump *p, size_t avail) {
  size_t want = avail < sizeof look ? avail : sizeof look;
  ssize_t t = tee(p->in, look_pipe[1], want, SPLICE_F_NONBLOCK);
  if (t <= 0) return -1;
  size_t got = 0;
  while (got < (size_t)t) {
    ssize_t r = read(look_pipe[0], look + got, (size_t)t - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1; /* cannot be: tee put them there */
    got += (size_t)r;
  }
  long long room = p->max - p->size;
  long cut = -1;
  for (long i = (room < (long long)got ? (long)room : (long)got) - 1; i >= 0; i--)
    if (look[i] == '\n') {
      cut = i;
      break;
    }
  if (cut < 0 && mid_line(p)) {
    const unsigned char *nl = memchr(look, '\n', got);
    long end = nl ? (long)(nl - look) : -1;
    if (end >= 0 && p->size + end < p->max + LINE_SLACK) cut = end;
    else if (end < 0 && p->size + (long long)got < p->max + LINE_SLACK) {
      if (move(p, got) < 0) write_failed(p, errno, got);
      return 0;
    }
  }
  if (cut >= 0 && move(p, (size_t)cut + 1) < 0) {
    write_failed(p, errno, (size_t)cut + 1);
    return 0;
  }
  ask_rotation(p);
  return 0;
}

/* Renames the chain (log → log.1, … → log.KEEP, the oldest removed) and opens a new log. */
static void rotate(struct pump *p) {
  size_t len = strlen(p->log) + 16;
  char *from = malloc(len), *to = malloc(len);
  if (from && to) {
    snprintf(to, len, "%s.%d", p->log, p->keep);
    unlink(to);
    for (int i = p->keep - 1; i >= 1; i--) {
      snprintf(from, len, "%s.%d", p->log, i);
      snprintf(to, len, "%s.%d", p->log, i + 1);
      rename(from, to); /* a gap in the chain (removed by hand): the rest moves on */
    }
    if (p->keep > 0) {
      snprintf(to, len, "%s.1", p->log);
      rename(p->log, to);
    } else {
      unlink(p->log);
    }
  }
  free(from);
  free(to);
  close(p->out);
  if (open_log(p) < 0) {
    int e = errno;
    say_pump_errno(p->pid, "error", "could not open the log", p->log, e);
    /* Output is counted, as on a full disk, and the log made again when writing is retried. */
    went_full(p);
  }
  p->paused = 0;
  watch_pump(p, 1);
}

/* Everything written is in the log and no writer is left: the FIFO goes, and the agent is told. */
static void end_pump(struct pump *p) {
  if (p->dropped > 0) try_resume(p);
  unlink(p->fifo);
  say_pump_number(p->pid, "end", 1);
  free_pump(p);
}

/*
 * An empty FIFO with no writer left. epoll says so (EPOLLHUP) only to a reader that opened it
 * before the last writer did; a pump that opened it later (an agent's restart) asks: a tee of
 * one byte is 0 at the end, EAGAIN while a writer is there, and consumes nothing.
 */
static int at_end(struct pump *p) {
  ssize_t t = tee(p->in, look_pipe[1], 1, SPLICE_F_NONBLOCK);
  if (t > 0) {
    unsigned char c;
    if (read(look_pipe[0], &c, 1) != 1) { /* tee put it there */ }
  }
  return t == 0;
}

/* The FIFO is readable (or its writers are gone): a turn of moving its bytes. */
static void pump_turn(struct pump *p, uint32_t events) {
  size_t moved = 0;
  while (!p->paused && moved < PUMP_TURN) {
    int avail = 0;
    if (ioctl(p->in, FIONREAD, &avail) < 0) avail = 0;
    if (avail <= 0) {
      if ((events & (EPOLLHUP | EPOLLERR)) || at_end(p)) end_pump(p);
      return;
    }
    moved += (size_t)avail;
    if (p->full) {
      if (p->out < 0 && now_ms() >= p->retry_at && open_log(p) < 0) p->retry_at = now_ms() + RETRY_FULL_MS;
      if (now_ms() < p->retry_at || !try_resume(p)) {
        if (drop(p, (size_t)avail) <= 0) return;
        continue;
      }
    }
    if (p->max > 0 && p->size > 0 && p->size + avail > p->max) {
      if (near_cap(p, (size_t)avail) < 0) return;
      continue;
    }
    if (move(p, (size_t)avail) < 0) {
      if (errno == EAGAIN) return;
      write_failed(p, errno, (size_t)avail);
    }
  }
}

/* A pump frame: strings FIFO, log, cap, keep. */
static void pump_frame(uint32_t pid, char *p, char *end) {
  char *fifo = next_string(&p, end), *log = next_string(&p, end), *max = next_string(&p, end), *keep = next_string(&p, end);
  if (!fifo || !log || !max || !keep) {
    say_pump((pid_t)pid, "failed", "a pump request without its FIFO, log, cap and keep");
    return;
  }
  start_pump((pid_t)pid, fifo, log, strtoll(max, NULL, 10), atoi(keep));
}

static void rotation_go(uint32_t pid) {
  struct pump *p = find_pump((pid_t)pid);
  if (p && p->paused) rotate(p);
}

static void spawn_one(unsigned char *frame, uint32_t len) {
  if (len < 16) return;
  uint32_t id = u32(frame), flags = u32(frame + 4), argc = u32(frame + 8), envc = u32(frame + 12);
  char *p = (char *)frame + 16, *end = (char *)frame + len;
  if (argc > len || envc > len) return;
  char *exe = next_string(&p, end), *cwd = next_string(&p, end), *out = next_string(&p, end);
  char **argv = calloc((size_t)argc + 2, sizeof *argv);
  char **envp = calloc((size_t)envc + 1, sizeof *envp);
  if (!argv || !envp) {
    say_error(id, ENOMEM, exe ? exe : "?");
    free(argv);
    free(envp);
    return;
  }
  int ok = exe && cwd && out;
  argv[0] = exe;
  for (uint32_t i = 0; ok && i < argc; i++) ok = (argv[i + 1] = next_string(&p, end)) != NULL;
  for (uint32_t i = 0; ok && i < envc; i++) ok = (envp[i] = next_string(&p, end)) != NULL;
  if (!ok) {
    say_error(id, EINVAL, exe ? exe : "?");
    goto done;
  }

  int fd = (flags & 1) ? open(out, O_RDWR | O_CLOEXEC) : open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    say_error(id, errno, out);
    goto done;
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  sigset_t all, none;
  /* Every signal at its default, glibc's own two (32, 33) included: sigfillset leaves them out,
     and posix_spawn then sets them to SIG_IGN in the child, which an exec keeps. */
  memset(&all, 0xff, sizeof all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  /* The helper is single-threaded: its own working directory is the child's, for the spawn
     (posix_spawn_file_actions_addchdir_np needs glibc 2.29). */
  pid_t pid = -1;
  int err = chdir(cwd) == 0 ? 0 : errno;
  if (err == 0) {
    err = strchr(exe, '/') ? posix_spawn(&pid, exe, &actions, &attr, argv, envp) : posix_spawnp(&pid, exe, &actions, &attr, argv, envp);
    if (chdir("/") != 0) { /* "/" is always there */ }
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fd);
  if (err != 0) {
    say_error(id, err, exe);
    goto done;
  }
  /* Read before the child can be reaped: it is reaped only by this loop, after this line. */
  long long ticks = start_ticks(pid), core = core_limit(pid);
  char line[160], ticks_text[24] = "null", core_text[24] = "null";
  if (ticks >= 0) snprintf(ticks_text, sizeof ticks_text, "%lld", ticks);
  if (core >= -1) snprintf(core_text, sizeof core_text, "%lld", core);
  int n = snprintf(line, sizeof line, "{\"id\":%u,\"pid\":%d,\"startTicks\":%s,\"coreLimit\":%s}\n", id, (int)pid, ticks_text, core_text);
  say(line, (size_t)n);
done:
  free(argv);
  free(envp);
}

static void frame(unsigned char *f, uint32_t len) {
  if (len < 16) return;
  uint32_t id = u32(f), flags = u32(f + 4);
  if (flags & 0x100) pump_frame(id, (char *)f + 16, (char *)f + len);
  else if (flags & 0x200) rotation_go(id);
  else spawn_one(f, len);
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    char line[96];
    int n;
    if (WIFSIGNALED(status)) {
      const char *name = signal_name(WTERMSIG(status));
      if (name) n = snprintf(line, sizeof line, "{\"exit\":%d,\"code\":null,\"signal\":\"%s\"}\n", (int)pid, name);
      else n = snprintf(line, sizeof line, "{\"exit\":%d,\"code\":null,\"signal\":\"SIG%d\"}\n", (int)pid, WTERMSIG(status));
    } else {
      n = snprintf(line, sizeof line, "{\"exit\":%d,\"code\":%d,\"signal\":null}\n", (int)pid, WEXITSTATUS(status));
    }
    say(line, (size_t)n);
  }
}

int main(void) {
  /* Descriptors the agent inherited from whoever started it, and passed on to us: not the
     launched processes' to hold (ours are close-on-exec). close_range is Linux 5.9. */
  if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++) close((int)fd);
  }
  /* SIGCHLD is read from a signalfd; a write to a gone agent is EPIPE, not a signal. */
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 1;
  if (chdir("/") != 0) return 1;

  say("{\"ready\":1}\n", 12);

  if (pipe2(look_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return 1;
  /* stdin and the signalfd are told apart from pumps by these two addresses. */
  static char stdin_tag, signal_tag;
  struct epoll_event in_ev = {.events = EPOLLIN, .data.ptr = &stdin_tag}, sig_ev = {.events = EPOLLIN, .data.ptr = &signal_tag};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in_ev) != 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sig_ev) != 0) return 1;

  size_t cap = 1 << 16, have = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) return 1;
  struct epoll_event events[64];
  for (;;) {
    int ready = epoll_wait(epfd, events, 64, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    int from_agent = 0;
    for (int i = 0; i < ready; i++) {
      void *tag = events[i].data.ptr;
      if (tag == &stdin_tag) {
        from_agent = 1;
      } else if (tag == &signal_tag) {
        struct signalfd_siginfo info;
        while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
        }
        reap();
      } else {
        /* A pump ended in this batch is gone: its events were for it alone (one fd each), and
           nothing after it in the batch names it. */
        pump_turn(tag, events[i].events);
      }
    }
    if (from_agent) {
      if (have == cap) {
        unsigned char *bigger = realloc(buf, cap * 2);
        if (!bigger) return 1;
        buf = bigger;
        cap *= 2;
      }
      ssize_t r = read(0, buf + have, cap - have);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) return 0; /* the agent closed our stdin, or is gone */
      have += (size_t)r;
      size_t at = 0;
      while (have - at >= 4) {
        uint32_t len = u32(buf + at);
        if (len > MAX_FRAME) return 1;
        if (have - at - 4 < len) {
          /* Room for the whole frame, so the next reads complete it. */
          if ((size_t)len + 4 > cap) {
            size_t want = cap;
            while (want < (size_t)len + 4) want *= 2;
            memmove(buf, buf + at, have - at);
            have -= at;
            at = 0;
            unsigned char *bigger = realloc(buf, want);
            if (!bigger) return 1;
            buf = bigger;
            cap = want;
          }
          break;
        }
        frame(buf + at + 4, len);
        at += 4 + (size_t)len;
      }
      memmove(buf, buf + at, have - at);
      have -= at;
      /* A launch with huge arguments grew the buffer: give it back once it is done. */
      if (cap > (1u << 20) && have <= (1u << 16)) {
        unsigned char *smaller = realloc(buf, 1 << 16);
        if (smaller) {
          buf = smaller;
          cap = 1 << 16;
        }
      }
    }
  }
}
