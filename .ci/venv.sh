#!/usr/bin/env bash
# `make venv`: the clone's .venv, its third-party packages shared from a cache.
#   .ci/venv.sh VENV EXTRAS     (run in the repository root; EXTRAS e.g. operator,dev)
#
# Installing torch and the rest takes minutes even from a warm pip cache (unpacking, not
# downloading). So the third-party packages live in a venv under the cache, keyed by a hash
# of pyproject.toml, the interpreter and EXTRAS, built once; the clone's own .venv is a
# small venv that adds that venv's site-packages (a .pth file) and holds only kinfer itself,
# installed editable from this clone, so it always points at this clone. The console
# scripts of the cached packages (pytest, mypy, ruff...) are copied into .venv/bin to run
# under .venv's interpreter (native ones are linked).
#
# KINFER_VENV_CACHE=0: no cache, everything installed into VENV (the old way).
# KINFER_PIP_ARGS: extra pip arguments (the tests use --no-index --no-build-isolation).
set -euo pipefail
venv=${1:?usage: .ci/venv.sh VENV EXTRAS}
extras=${2:?usage: .ci/venv.sh VENV EXTRAS}
python=${PYTHON:-python3}
cache=${KINFER_CACHE:-$HOME/.cache/kinfer}
read -r -a pip_args <<<"${KINFER_PIP_ARGS:-}"

pip() { "$1/bin/python" -m pip install -q "${pip_args[@]}" "${@:2}"; }

if [[ ${KINFER_VENV_CACHE:-1} == 0 ]]; then
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    pip "$venv" --upgrade pip
    pip "$venv" -e ".[$extras]"
    exit 0
fi

key=$({ cat pyproject.toml; "$python" -VV; echo "$extras"; } | sha256sum | cut -c1-16)
deps=$cache/venv-$key
mkdir -p "$cache"

# The shared venv, built once under a lock (clones building side by side wait for it).
# Built in place: a venv's scripts name its own path, so it cannot be moved once built.
exec 9>"$deps.lock"
flock 9
if [[ ! -f $deps/.complete ]]; then
    echo "venv: building the shared packages in $deps"
    rm -rf "$deps"
    "$python" -m venv "$deps"
    pip "$deps" --upgrade pip
    # The project's dependencies, not the project: installed, then removed again.
    pip "$deps" ".[$extras]"
    name=$("$deps/bin/python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["name"])')
    "$deps/bin/python" -m pip uninstall -q -y "$name"
    touch "$deps/.complete"
else
    echo "venv: shared packages from $deps"
fi
flock -u 9
exec 9>&-
touch "$deps/.complete"  # last used: the pruning below keeps what is in use
# Shared venvs unused for two weeks (an older pyproject.toml) go.
find "$cache" -maxdepth 1 -name 'venv-*' -type d ! -path "$deps" -print0 |
    while IFS= read -r -d '' old; do
        if [[ -z $(find "$old/.complete" -mtime -14 2>/dev/null) ]]; then
            rm -rf "$old" "$old.lock"
        fi
    done

# The clone's venv: no pip of its own (the shared one's is used), so nothing in it shadows
# the shared packages.
rm -rf "$venv"
"$python" -m venv --without-pip "$venv"
venv=$(cd "$venv" && pwd)
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
shared=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# addsitedir, not a bare path: the shared site-packages' own .pth files are read too.
echo "import site; site.addsitedir('$shared')" >"$site/_kinfer_shared_venv.pth"
for script in "$deps"/bin/*; do
    name=${script##*/}
    case $name in python* | pip* | activate* | Activate.ps1 | __pycache__) continue ;; esac
    [[ -e $venv/bin/$name ]] && continue
    if [[ $(head -c 2 "$script") == '#!' ]] && head -n 1 "$script" | grep -q "^#!$deps/bin/python"; then
        { echo "#!$venv/bin/python"; tail -n +2 "$script"; } >"$venv/bin/$name"
        chmod +x "$venv/bin/$name"
    else
        ln -s "$script" "$venv/bin/$name"
    fi
done
"$venv/bin/python" -m pip install -q "${pip_args[@]}" --no-deps -e .
