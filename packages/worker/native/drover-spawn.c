/*
 * drover-spawn: the worker agent's spawn helper, native.
 *
 * Speaks the protocol of the Node helper in spawn-helper.ts, with requests framed in binary:
 *
 *   in (stdin), one frame per spawn, integers little-endian u32:
 *     length of the rest, id, flags (1: the output is a FIFO, opened read-write; else a log
 *     file, opened to append), argc, envc, then NUL-terminated strings: exe, cwd, out,
 *     argc arguments (argv[0] is exe), envc "NAME=VALUE"
 *   out (stdout), one JSON line each:
 *     {"ready":1}                                   once, at start
 *     {"id":N,"pid":P,"startTicks":T,"coreLimit":C}  spawned (T and C read from /proc, or null)
 *     {"id":N,"error":{"code":"ENOENT","message":"spawn EXE ENOENT"}}
 *     {"exit":P,"code":N|null,"signal":"SIGKILL"|null}
 *
 * Each process is started with posix_spawn, which glibc does with clone(CLONE_VM|CLONE_VFORK):
 * no page tables are copied, where a fork of even a small Node process copies tens of MiB of
 * them (0.3 ms a spawn here against 4 ms for Node's child_process.spawn). The child starts a
 * session of its own (as Node's detached: true), its signal dispositions at their defaults and
 * none blocked, stdin /dev/null, stdout and stderr the output file; every descriptor of ours is
 * close-on-exec. The helper ends when its stdin closes; its children live on, re-parented.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
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

  size_t cap = 1 << 16, have = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) return 1;
  struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
      }
      reap();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
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
        spawn_one(buf + at + 4, len);
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
