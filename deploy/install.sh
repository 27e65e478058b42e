#!/bin/sh
# drover worker installer: turns a Linux VM into a drover worker.
#
#   curl -fsSLk --pinnedpubkey sha256//PIN https://MASTER:7070/install.sh |
#     DROVER_TOKEN=TOKEN sudo --preserve-env=DROVER_TOKEN sh -s -- --fingerprint sha256:HEX
#
# The token comes from DROVER_TOKEN or --token-file, so it is never an argument that every
# local user can read in ps while this runs.
#
# The master serves this script with its own address filled in below. Re-running upgrades in
# place; --uninstall removes everything the script made. POSIX sh; tested on Debian, and
# written for Amazon Linux 2023, Ubuntu and Debian.
set -eu

DEFAULT_MASTER="__DROVER_MASTER__"
DEFAULT_SCHEME="__DROVER_SCHEME__"
# The public-key pin of the master's self-signed certificate, in curl's form and drover's.
DEFAULT_PIN="__DROVER_PIN__"
DEFAULT_FINGERPRINT="__DROVER_FINGERPRINT__"
DEFAULT_PREFIX=/opt/drover
SERVICE=drover-worker
UNIT_FILE=/etc/systemd/system/$SERVICE.service
SYSTEM_USER=drover

usage() {
  cat <<'EOF'
usage: install.sh [--token-file FILE] [--master HOST:PORT] [--name NAME] [--prefix DIR]
                  [--state-dir DIR] [--node PATH] [--ca FILE] [--no-systemd] [--uninstall]

  --token-file FILE read the join token from FILE (or set DROVER_TOKEN)
  --token TOKEN     the join token itself (visible in ps while this runs: prefer the above)
  --master H:P      the master (default: where this script was served from);
                    https://H:P for a master with TLS
  --fingerprint F   sha256:HEX of the master's public key (its join line has it): the
                    worker talks to no other server
  --ca FILE         PEM CA that signed the master's TLS certificate (a private CA)
  --name NAME       worker name (default: the host name)
  --prefix DIR      install here instead of /opt/drover (state goes in DIR/state)
  --state-dir DIR   worker state (default: /var/lib/drover, or DIR/state with --prefix)
  --node PATH       the Node.js (>= 20) to run the worker with
  --no-systemd      start the worker in the background instead of as a systemd service
  --uninstall       stop the worker and remove everything this script installed
EOF
}

say() { printf 'drover: %s\n' "$*"; }
die() {
  printf 'drover: error: %s\n' "$*" >&2
  exit 1
}

TOKEN=${DROVER_TOKEN:-}
MASTER=""
NAME=""
PREFIX=$DEFAULT_PREFIX
STATE_DIR=""
NODE=""
CA=""
FINGERPRINT=""
USE_SYSTEMD=auto
UNINSTALL=0

while [ $# -gt 0 ]; do
  case "$1" in
    --token) [ $# -ge 2 ] || die "--token needs a value"; TOKEN=$2; shift 2 ;;
    --token-file)
      [ $# -ge 2 ] || die "--token-file needs a value"
      [ -r "$2" ] || die "cannot read --token-file $2"
      TOKEN=$(tr -d ' \t\r\n' <"$2")
      shift 2
      ;;
    --master) [ $# -ge 2 ] || die "--master needs a value"; MASTER=$2; shift 2 ;;
    --name) [ $# -ge 2 ] || die "--name needs a value"; NAME=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --state-dir) [ $# -ge 2 ] || die "--state-dir needs a value"; STATE_DIR=$2; shift 2 ;;
    --node) [ $# -ge 2 ] || die "--node needs a value"; NODE=$2; shift 2 ;;
    --ca) [ $# -ge 2 ] || die "--ca needs a value"; CA=$2; shift 2 ;;
    --fingerprint) [ $# -ge 2 ] || die "--fingerprint needs a value"; FINGERPRINT=$2; shift 2 ;;
    --no-systemd) USE_SYSTEMD=no; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

case "$PREFIX" in
  /*) ;;
  *) die "--prefix must be an absolute path, got $PREFIX" ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || die "--prefix / is not allowed"
if [ -z "$STATE_DIR" ]; then
  if [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then STATE_DIR=/var/lib/drover; else STATE_DIR=$PREFIX/state; fi
fi
if [ "$USE_SYSTEMD" = auto ]; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then USE_SYSTEMD=yes; else USE_SYSTEMD=no; fi
fi
RECORD=$PREFIX/.drover-installed
PIDFILE=$PREFIX/run/worker.pid
LOGFILE=$PREFIX/log/worker.log

is_root() { [ "$(id -u)" -eq 0 ]; }

# ------------------------------------------------------------------ stopping and removing

stop_background() {
  [ -f "$PIDFILE" ] || return 0
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  case "$pid" in '' | *[!0-9]*) rm -f "$PIDFILE"; return 0 ;; esac
  if kill "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

uninstall() {
  if [ ! -f "$RECORD" ]; then
    die "nothing to uninstall: $RECORD not found (was drover installed with --prefix $PREFIX?)"
  fi
  say "uninstalling from $PREFIX"
  if grep -qx 'systemd' "$RECORD"; then
    systemctl disable --now "$SERVICE" >/dev/null 2>&1 || true
    rm -f "$UNIT_FILE"
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
  stop_background
  if grep -qx 'link' "$RECORD"; then rm -f /usr/local/bin/worker; fi
  state=$(sed -n 's/^state=//p' "$RECORD")
  [ -n "$state" ] && [ "$state" != / ] && rm -rf "$state"
  if grep -qx 'user' "$RECORD"; then userdel "$SYSTEM_USER" >/dev/null 2>&1 || true; fi
  rm -rf "$PREFIX/bin/worker" "$PREFIX/lib/worker.mjs" "$PREFIX/lib/drover-spawn" "$PREFIX/etc/worker.env" "$PREFIX/etc/ca.pem" "$PREFIX/run" "$PREFIX/log"
  for d in bin lib etc; do rmdir "$PREFIX/$d" 2>/dev/null || true; done
  rm -f "$RECORD"
  rmdir "$PREFIX" 2>/dev/null || true
  say "uninstalled; apps the worker launched keep running until stopped"
}

if [ "$UNINSTALL" -eq 1 ]; then
  if [ "$PREFIX" = "$DEFAULT_PREFIX" ] || [ -f "$UNIT_FILE" ]; then is_root || die "--uninstall needs root (run it with sudo)"; fi
  uninstall
  exit 0
fi

# ------------------------------------------------------------------ checks

[ -n "$TOKEN" ] || die "no join token: set DROVER_TOKEN or pass --token-file FILE (the master's 'join' command prints the line)"
case "$TOKEN" in *[!A-Za-z0-9._~+/=-]*) die "the token has characters a drover token never has; copy it again" ;; esac
SCHEME=http
case "$DEFAULT_SCHEME" in https) SCHEME=https ;; esac
if [ -z "$MASTER" ]; then
  case "$DEFAULT_MASTER" in
    __DROVER_MASTER*) die "no master address: pass --master HOST:PORT" ;;
    *) MASTER=$DEFAULT_MASTER ;;
  esac
fi
case "$MASTER" in
  https://*) SCHEME=https; MASTER=${MASTER#https://} ;;
  http://*) SCHEME=http; MASTER=${MASTER#http://} ;;
esac
MASTER=${MASTER%/}
PIN=""
case "$DEFAULT_PIN" in sha256//*) PIN=$DEFAULT_PIN ;; esac
case "$DEFAULT_FINGERPRINT" in sha256:*) [ -n "$FINGERPRINT" ] || FINGERPRINT=$DEFAULT_FINGERPRINT ;; esac
if [ -n "$FINGERPRINT" ]; then
  case "$FINGERPRINT" in sha256:*) ;; *) die "--fingerprint must look like sha256:HEX (the master's join line has it)" ;; esac
  [ "$SCHEME" = https ] || die "--fingerprint is for a master with TLS (https://HOST:PORT)"
  # This script came from the master it names: a pin it was given must be the one it serves.
  case "$DEFAULT_FINGERPRINT" in
    sha256:*) [ "$FINGERPRINT" = "$DEFAULT_FINGERPRINT" ] || die "the master at $MASTER presents $DEFAULT_FINGERPRINT, not --fingerprint $FINGERPRINT; nothing was installed" ;;
  esac
fi
if [ -n "$CA" ]; then
  [ -r "$CA" ] || die "--ca $CA is not a readable file"
  grep -q 'BEGIN CERTIFICATE' "$CA" || die "--ca $CA is not a PEM certificate"
  [ "$SCHEME" = https ] || die "--ca is for a master with TLS (https://HOST:PORT)"
fi
case "$MASTER" in
  *:*) ;;
  *) die "--master must be HOST:PORT, got $MASTER" ;;
esac
case "$MASTER" in *[!A-Za-z0-9.:\[\]-]*) die "--master must be HOST:PORT, got $MASTER" ;; esac
if [ -n "$NAME" ]; then
  printf '%s' "$NAME" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' || die "--name must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit"
fi
if [ "$USE_SYSTEMD" = yes ] || [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then
  is_root || die "installing a system service needs root: run it with sudo (or use --prefix DIR --no-systemd)"
fi

if command -v curl >/dev/null 2>&1; then
  fetch() {
    if [ -n "$PIN" ]; then
      # A self-signed master: no CA to check, so its public key is pinned instead.
      curl -fsSLk --pinnedpubkey "$PIN" --retry 3 --connect-timeout 10 -o "$2" "$1"
    elif [ -n "$CA" ]; then
      curl -fsSL --retry 3 --connect-timeout 10 --cacert "$CA" -o "$2" "$1"
    else
      curl -fsSL --retry 3 --connect-timeout 10 -o "$2" "$1"
    fi
  }
elif command -v wget >/dev/null 2>&1; then
  [ -z "$PIN" ] || die "this master pins its certificate, which needs curl: install curl and run this again"
  fetch() {
    if [ -n "$CA" ]; then wget -q -T 10 -t 3 --ca-certificate="$CA" -O "$2" "$1"; else wget -q -T 10 -t 3 -O "$2" "$1"; fi
  }
else
  die "neither curl nor wget is installed; install one of them and run this again"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed (coreutils); install it and run this again"
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

find_node() {
  candidates="node node22 node-22 node20 node-20 /usr/bin/node /usr/local/bin/node"
  # An explicit --node is the only candidate.
  [ -n "$NODE" ] && candidates=$NODE
  for candidate in $candidates; do
    [ -n "$candidate" ] || continue
    path=$(command -v "$candidate" 2>/dev/null || true)
    [ -n "$path" ] || continue
    if [ "$(node_major "$path")" -ge 20 ]; then
      NODE=$path
      return 0
    fi
  done
  return 1
}

install_node() {
  is_root || return 1
  say "Node.js >= 20 not found; installing it with the system package manager"
  if command -v dnf >/dev/null 2>&1; then
    dnf install -y nodejs22 >/dev/null 2>&1 || dnf install -y nodejs20 >/dev/null 2>&1 || dnf install -y nodejs >/dev/null 2>&1 || return 1
  elif command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null 2>&1 || return 1
  elif command -v yum >/dev/null 2>&1; then
    yum install -y nodejs >/dev/null 2>&1 || return 1
  else
    return 1
  fi
}

if ! find_node; then
  if [ -n "$NODE" ]; then die "--node $NODE is not Node.js 20 or later"; fi
  install_node || true
  find_node || die "Node.js 20 or later is required and the system packages do not provide it; install Node.js 20+ (https://nodejs.org/en/download, or NodeSource packages) and run this again, or pass --node /path/to/node"
fi
say "using Node.js $("$NODE" --version) at $NODE"

# ------------------------------------------------------------------ download and stage

BASE="$SCHEME://$MASTER"
mkdir -p "$PREFIX"
STAGE=$(mktemp -d "$PREFIX/.staging.XXXXXX")
COMMITTED=0
FRESH=1
[ -f "$RECORD" ] && FRESH=0
on_exit() {
  status=$?
  rm -rf "$STAGE"
  if [ $status -ne 0 ] && [ "$COMMITTED" -eq 1 ] && [ "$FRESH" -eq 1 ]; then
    say "install failed; removing what was installed"
    uninstall >/dev/null 2>&1 || true
  fi
  if [ $status -ne 0 ] && [ "$FRESH" -eq 1 ]; then rmdir "$PREFIX" 2>/dev/null || true; fi
  exit $status
}
trap on_exit EXIT
trap 'exit 130' INT TERM

say "downloading the worker from $BASE"
fetch "$BASE/worker.mjs" "$STAGE/worker.mjs" || die "could not download $BASE/worker.mjs (is the master running and reachable on that address?)"
fetch "$BASE/worker.mjs.sha256" "$STAGE/worker.mjs.sha256" || die "could not download $BASE/worker.mjs.sha256"
want=$(cut -d' ' -f1 "$STAGE/worker.mjs.sha256")
got=$(sha256 "$STAGE/worker.mjs")
if [ -z "$want" ] || [ "$want" != "$got" ]; then
  die "the downloaded worker is corrupt: sha256 $got, expected $want; nothing was installed"
fi
# The native spawn helper, where the master has one for this machine's architecture: launches
# fork from it in a fraction of the time. Without it the worker launches through its Node helper.
if fetch "$BASE/drover-spawn.sha256" "$STAGE/drover-spawn.sha256" 2>/dev/null; then
  spawn_want=$(cut -d' ' -f1 "$STAGE/drover-spawn.sha256")
  spawn_arch=$(awk '{print $3}' "$STAGE/drover-spawn.sha256")
  node_arch=$("$NODE" -p process.arch 2>/dev/null || echo unknown)
  if [ "$spawn_arch" = "$node_arch" ]; then
    fetch "$BASE/drover-spawn" "$STAGE/drover-spawn" || die "could not download $BASE/drover-spawn"
    spawn_got=$(sha256 "$STAGE/drover-spawn")
    if [ -z "$spawn_want" ] || [ "$spawn_want" != "$spawn_got" ]; then
      die "the downloaded spawn helper is corrupt: sha256 $spawn_got, expected $spawn_want; nothing was installed"
    fi
  else
    say "the master's native spawn helper is for $spawn_arch, this machine is $node_arch: launches use the Node helper"
  fi
fi
if [ "$USE_SYSTEMD" = yes ]; then
  fetch "$BASE/drover-worker.service" "$STAGE/unit" || die "could not download $BASE/drover-worker.service"
fi

cat >"$STAGE/worker" <<EOF
#!/bin/sh
# drover worker (installed by install.sh). Settings come from $PREFIX/etc/worker.env.
if [ -r "$PREFIX/etc/worker.env" ]; then
  . "$PREFIX/etc/worker.env"
  export DROVER_TOKEN DROVER_MASTER DROVER_NAME DROVER_CA DROVER_FINGERPRINT
fi
# One malloc arena: glibc gives each thread that allocates (the GC's helpers, the thread
# pool) its own, and keeps what they freed. After a copy the agent's anonymous memory went back
# to ~22-31 MB with them, to its idle ~19 MB with one, at the same copy speed. Apps do not
# inherit it: their environment is built from scratch.
export MALLOC_ARENA_MAX="\${MALLOC_ARENA_MAX:-1}"
exec "$NODE" "$PREFIX/lib/worker.mjs" "\$@"
EOF
WORKER_MASTER=$MASTER
WORKER_CA=""
if [ "$SCHEME" = https ]; then WORKER_MASTER="wss://$MASTER"; fi
if [ -n "$CA" ]; then
  cp "$CA" "$STAGE/ca.pem"
  WORKER_CA=$PREFIX/etc/ca.pem
fi
umask 077
{
  printf "DROVER_TOKEN='%s'\n" "$TOKEN"
  printf "DROVER_MASTER='%s'\n" "$WORKER_MASTER"
  printf "DROVER_NAME='%s'\n" "$NAME"
  printf "DROVER_CA='%s'\n" "$WORKER_CA"
  printf "DROVER_FINGERPRINT='%s'\n" "$FINGERPRINT"
} >"$STAGE/worker.env"
umask 022
"$NODE" --check "$STAGE/worker.mjs" 2>/dev/null || die "the downloaded worker does not parse with $NODE; nothing was installed"

# ------------------------------------------------------------------ install (renames into place)

if [ "$FRESH" -eq 0 ]; then say "upgrading the existing install in $PREFIX"; fi
stop_background
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/etc"
COMMITTED=1
{
  echo "prefix=$PREFIX"
  echo "state=$STATE_DIR"
} >"$STAGE/record"
chmod 0755 "$STAGE/worker"
chmod 0644 "$STAGE/worker.mjs"
chmod 0600 "$STAGE/worker.env"
if [ -f "$STAGE/drover-spawn" ]; then
  chmod 0755 "$STAGE/drover-spawn"
  mv -f "$STAGE/drover-spawn" "$PREFIX/lib/drover-spawn"
else
  # An older one would not speak this worker's version.
  rm -f "$PREFIX/lib/drover-spawn"
fi
mv -f "$STAGE/worker.mjs" "$PREFIX/lib/worker.mjs"
mv -f "$STAGE/worker" "$PREFIX/bin/worker"
mv -f "$STAGE/worker.env" "$PREFIX/etc/worker.env"
if [ -f "$STAGE/ca.pem" ]; then
  chmod 0644 "$STAGE/ca.pem"
  mv -f "$STAGE/ca.pem" "$PREFIX/etc/ca.pem"
fi
mv -f "$STAGE/record" "$RECORD"

if [ "$PREFIX" = "$DEFAULT_PREFIX" ] && is_root; then
  ln -sf "$PREFIX/bin/worker" /usr/local/bin/worker
  echo link >>"$RECORD"
fi

if [ "$USE_SYSTEMD" = yes ]; then
  if ! id "$SYSTEM_USER" >/dev/null 2>&1; then
    nologin=$(command -v nologin || echo /sbin/nologin)
    useradd --system --no-create-home --home-dir "$STATE_DIR" --shell "$nologin" "$SYSTEM_USER" || die "could not create the system user $SYSTEM_USER"
    echo user >>"$RECORD"
  fi
  sed -e "s#/opt/drover#$PREFIX#g" -e "s#/var/lib/drover#$STATE_DIR#g" "$STAGE/unit" >"$UNIT_FILE"
  chmod 0644 "$UNIT_FILE"
  echo systemd >>"$RECORD"
  systemctl daemon-reload || die "systemctl daemon-reload failed"
  systemctl enable "$SERVICE" >/dev/null 2>&1 || die "could not enable $SERVICE"
  systemctl restart "$SERVICE" || die "could not start $SERVICE; see: journalctl -u $SERVICE"
  sleep 1
  systemctl is-active --quiet "$SERVICE" || die "$SERVICE did not stay up; see: journalctl -u $SERVICE"
  say "installed; the worker runs as the systemd service $SERVICE (journalctl -u $SERVICE for its log)"
else
  mkdir -p "$PREFIX/run" "$PREFIX/log" "$STATE_DIR"
  nohup "$PREFIX/bin/worker" --state-dir "$STATE_DIR" >>"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  sleep 1
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "the worker exited at once; its log: $(tail -n 3 "$LOGFILE" | tr '\n' ' ')"
  say "installed; the worker runs in the background (pid $(cat "$PIDFILE"), log $LOGFILE)"
  say "stop it with: kill \$(cat $PIDFILE)   remove it with: sh install.sh --prefix $PREFIX --uninstall"
fi
say "joining the master at $SCHEME://$MASTER"
