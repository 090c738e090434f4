# test/lib.sh: set-up shared by test/run, test/demo and the bench scripts.
#
# Sourced, not run.  Provides:
#   tasker_setup         install missing Debian packages, build (-Werror), install
#   tasker_workdir       a scratch directory owned by the postgres OS user
#   cluster_start NAME PORT [postgresql.conf lines...]
#                        a throwaway cluster in $WORK/NAME, listening only on
#                        a unix socket in $WORK on PORT
#   cluster_stop NAME
#   pgsql PORT [psql args...]   psql as postgres against the cluster on PORT
#
# PostgreSQL refuses to run as root, so every server and client runs as the
# postgres OS user through runuser.

set -euo pipefail

TASKER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
# TASKER_PG_ROOT (developers' option, default none): the root of a copy of
# the PostgreSQL installation (cp -a /usr/lib/postgresql/15 to
# ROOT/usr/lib/postgresql/, /usr/share/postgresql/15 to
# ROOT/usr/share/postgresql/, a link to /usr/include/postgresql at
# ROOT/usr/include/postgresql).  PostgreSQL finds its files relative to its
# binaries, so builds and suites against different copies run at the same
# time on one machine, each under its own install lock.
PG_ROOT=${TASKER_PG_ROOT:-}
PG_LIB=$PG_ROOT/usr/lib/postgresql/$PG_MAJOR
PG_BIN=$PG_LIB/bin
export PG_CONFIG=$PG_BIN/pg_config
INSTALL_LOCK=/tmp/tasker-install$(echo "$PG_ROOT" | tr / _).lock
PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-pgtap
postgresql-$PG_MAJOR-cron libyaml-dev libcurl4-openssl-dev libipc-run-perl pkg-config
make gcc python3 python3-psycopg libtap-parser-sourcehandler-pgtap-perl graphviz ruby ruby-pg
prometheus-postgres-exporter postgresql-$PG_MAJOR-plproxy"
TASKER_PORT=${TASKER_PORT:-54329}

as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Install whatever Debian package is missing; apt-get update runs once, and
# only when something is missing.
tasker_install_packages() {
	local missing="" p
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		if [ "$(id -u)" != 0 ]; then
			echo "missing packages and not root: install$missing" >&2
			exit 1
		fi
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends $missing >/dev/null
	fi
	# The exporter's package starts a service; the tests start their own.
	if command -v systemctl >/dev/null && [ "$(id -u)" = 0 ]; then
		systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
	fi
	# The Debian package starts a default cluster we do not use.
	if command -v pg_lsclusters >/dev/null && [ "$(id -u)" = 0 ]; then
		pg_ctlcluster $PG_MAJOR main stop >/dev/null 2>&1 || true
	fi
}

# Build with warnings as errors and install into the PostgreSQL tree.
tasker_build() {
	echo "== building tasker${TASKER_SANITIZE:+ with -fsanitize=address,undefined}"
	if [ -n "${TASKER_SANITIZE:-}" ]; then
		# Objects built with other flags are not rebuilt by make: start clean.
		make -C "$TASKER_ROOT" -s clean >/dev/null
		make -C "$TASKER_ROOT" -s -j2 TASKER_WERROR=1 TASKER_SANITIZE=1 >/dev/null
	else
		make -C "$TASKER_ROOT" -s -j2 TASKER_WERROR=1 >/dev/null
	fi
	make -C "$TASKER_ROOT" -s install >/dev/null
}

# sanitize_start DIR: an empty DIR for the sanitizers' reports.  The
# runtimes' options (reports under /tmp/tasker-sanitizer, the build's
# TASKER_SANITIZE_LOG) are compiled into tasker.so (src/sanitize.c): a
# backend cannot read them from its environment.  Run under the install
# lock, so no other run writes there.
sanitize_start() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 1777 "$dir"
}

# sanitize_reports DIR: print the sanitizer reports in DIR and set
# SANITIZER_REPORTS to their number.
sanitize_reports() {
	local dir=$1 f
	SANITIZER_REPORTS=0
	for f in "$dir"/asan.* "$dir"/ubsan.*; do
		[ -f "$f" ] || continue
		SANITIZER_REPORTS=$((SANITIZER_REPORTS + $(grep -cE 'ERROR: AddressSanitizer|runtime error:' "$f" || true)))
		echo "-- $f"
		head -40 "$f"
	done
}

# sanitize_restore: put back the ordinary build: the installation is
# shared, and an instrumented tasker.so cannot load without the runtime.
sanitize_restore() {
	unset TASKER_SANITIZE
	echo "== restoring the ordinary build"
	make -C "$TASKER_ROOT" -s clean >/dev/null
	tasker_build
}

tasker_setup() {
	# One install-and-test at a time on this machine: every run installs
	# into the same PostgreSQL tree.
	exec 9>"$INSTALL_LOCK"
	flock 9
	tasker_install_packages
	tasker_build
}

# A scratch directory the postgres user owns, removed on exit.
tasker_workdir() {
	WORK=$(mktemp -d /tmp/tasker-work.XXXXXX)
	chown postgres: "$WORK" 2>/dev/null || true
	chmod 755 "$WORK"
	trap tasker_cleanup EXIT
	export WORK
}

CLUSTERS=""
tasker_cleanup() {
	local c
	for c in $CLUSTERS; do
		cluster_stop "$c" >/dev/null 2>&1 || true
	done
	if [ -n "${WORK:-}" ] && [ -n "${TASKER_KEEP:-}" ]; then
		echo "== kept $WORK" >&2
	elif [ -n "${WORK:-}" ]; then
		rm -rf "$WORK"
	fi
	return 0
}

# cluster_start NAME PORT [conf lines...]: initdb and start a cluster that
# listens only on a unix socket in $WORK.
cluster_start() {
	local name=$1 port=$2 line
	shift 2
	as_pg "$PG_BIN/initdb" -D "$WORK/$name" -A trust -U postgres --no-sync >"$WORK/$name.initdb.log" 2>&1
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$WORK'"
		echo "port = $port"
		echo "fsync = off"
		echo "log_min_messages = warning"
		for line in "$@"; do
			echo "$line"
		done
	} | as_pg tee -a "$WORK/$name/postgresql.conf" >/dev/null
	as_pg "$PG_BIN/pg_ctl" -D "$WORK/$name" -l "$WORK/$name.log" -w -t 60 start >/dev/null
	CLUSTERS="$CLUSTERS $name"
}

cluster_stop() {
	as_pg "$PG_BIN/pg_ctl" -D "$WORK/$1" -m fast -w -t 30 stop
}

# pgsql PORT [args]: psql as postgres over the unix socket in $WORK.
pgsql() {
	local port=$1
	shift
	as_pg "$PG_BIN/psql" -X -h "$WORK" -p "$port" -v ON_ERROR_STOP=1 "$@"
}
