#!/bin/sh
# Bootstrap of a Hybrid edge node, for cloud-init or a shell: puts hybrid-inference[edge] into
# PREFIX/venv, then hands over to `PREFIX/venv/bin/hybrid-edge install` with the same arguments
# (the verified artifact, agent.yaml, the systemd unit). Safe to run again.
#
#   sh install.sh --artifact URL --sha256 H [--trust PUBKEY] --region R --router HOST:PORT \
#       [--tls-cert FILE --tls-key FILE [--tls-ca FILE] | --plaintext] \
#       [--wheel FILE | --package SPEC] [--index-url URL] [--find-links DIR] [--reuse-site-packages] \
#       [--prefix /opt/hybrid-edge] [--python python3] [any other `hybrid-edge install` flag]
# The agent runs as the unprivileged user hybrid-edge (--user), on loopback unless given TLS files.
# Only POSIX sh and python3 (3.10 or newer, with its venv module) are needed.
set -eu

PREFIX=/opt/hybrid-edge
PYTHON=${PYTHON:-python3}
WHEEL=
PACKAGE=
INDEX_URL=
FIND_LINKS=
REUSE=
CONSUL=yes

die() {
    echo "install.sh: $*" >&2
    exit 1
}

# Pick out what the bootstrap needs. The package flags are its business alone, so they are taken out
# of the arguments passed on; the rest (--prefix included) goes to `hybrid-edge install` unchanged.
count=$#
while [ "$count" -gt 0 ]; do
    arg=$1
    shift
    count=$((count - 1))
    case $arg in
        --wheel|--package|--index-url|--find-links|--python)
            [ "$count" -gt 0 ] || die "$arg needs a value"
            value=$1
            shift
            count=$((count - 1))
            case $arg in
                --wheel) WHEEL=$value ;;
                --package) PACKAGE=$value ;;
                --index-url) INDEX_URL=$value ;;
                --find-links) FIND_LINKS=$value ;;
                --python) PYTHON=$value ;;
            esac
            continue
            ;;
        --wheel=*) WHEEL=${arg#*=}; continue ;;
        --package=*) PACKAGE=${arg#*=}; continue ;;
        --index-url=*) INDEX_URL=${arg#*=}; continue ;;
        --find-links=*) FIND_LINKS=${arg#*=}; continue ;;
        --python=*) PYTHON=${arg#*=}; continue ;;
        --reuse-site-packages) REUSE=yes; continue ;;
        --prefix=*) PREFIX=${arg#*=} ;;
        --prefix) [ "$count" -gt 0 ] && PREFIX=$1 ;;
        --discovery=*) case ${arg#*=} in consul*) CONSUL=yes ;; *) CONSUL= ;; esac ;;
        --discovery) [ "$count" -gt 0 ] && case $1 in consul*) CONSUL=yes ;; *) CONSUL= ;; esac ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    esac
    set -- "$@" "$arg"
done

[ "$(uname -s)" = Linux ] || die "edge nodes run Linux"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.10 or newer (and its venv module)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$PYTHON is older than 3.10"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--wheel $WHEEL does not exist"

EXTRAS=edge
[ -z "$CONSUL" ] || EXTRAS=edge,consul
if [ -n "$WHEEL" ]; then
    SPEC="$WHEEL[$EXTRAS]"
elif [ -n "$PACKAGE" ]; then
    SPEC=$PACKAGE
else
    SPEC="hybrid-inference[$EXTRAS]"
fi

VENV=$PREFIX/venv
FRESH=
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV: install the venv module (e.g. python3-venv)"
    FRESH=yes
fi
if [ -n "$REUSE" ]; then
    # As `hybrid-edge install --reuse-site-packages` does: the folders only, none of their .pth files.
    SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' >"$SITE/hybrid-edge-reuse-site-packages.pth"
fi

pip_install() {
    if [ -n "$INDEX_URL" ]; then
        set -- --index-url "$INDEX_URL" "$@"
    elif [ -n "$REUSE$FIND_LINKS" ]; then
        set -- --no-index "$@"  # air-gapped: everything comes from here
    fi
    [ -z "$FIND_LINKS" ] || set -- --find-links "$FIND_LINKS" "$@"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet "$@"
}

echo "install.sh: installing $SPEC into $VENV" >&2
# A rebuilt wheel may keep its version number: reinstall it, then let pip settle its dependencies.
if [ -n "$WHEEL" ] && [ -z "$FRESH" ]; then
    pip_install --force-reinstall --no-deps "$WHEEL" || die "pip could not install $WHEEL"
fi
pip_install "$SPEC" || die "pip could not install $SPEC"

exec "$VENV/bin/hybrid-edge" install "$@"
