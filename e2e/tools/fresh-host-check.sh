#!/usr/bin/env bash
# Fresh-host check: does the repo's host setup work on stock Debian packages alone?
#
# Builds a clean $DEBIAN_SUITE root with mmdebstrap (from this host's apt sources, plus make),
# copies the Makefile and e2e/tools into it, and inside it (a customize hook: mmdebstrap mounts
# /proc, /sys and /dev for the hook and unmounts them after):
#   1. runs `make system-deps` (apt-get installs SYSTEM_PACKAGES from the suite's archive),
#   2. installs each npm server with e2e/tools/objectstores.sh (npm ci --ignore-scripts from the
#      lockfile) under the Node.js the suite ships,
#   3. starts it on 127.0.0.1 (a free port; the root shares this host's network) and checks it
#      answers: s3rver lists its buckets, Azurite creates a container and writes and reads back
#      a blob with an account SAS; then stops it by its PID.
# Everything lives in a temp dir outside the repo (under KINFER_FRESH_HOST_DIR, default
# /var/tmp), the root itself on a tmpfs mounted there (4 GiB cap; the log's last hook line
# shows what it used), all removed at exit; the script then checks that no mount and no
# process is left under it. Needs root (mmdebstrap root mode) and network to the Debian and
# npm registries. Not part of `make test`: it takes minutes and downloads.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

log() { printf '[fresh-host %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap root mode and its chroot hooks)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (make system-deps)"

STATE=$(mktemp -d "${KINFER_FRESH_HOST_DIR:-/var/tmp}/kinfer-fresh-host.XXXXXX")
case $STATE in "$REPO"/*) rmdir "$STATE"; die "the state dir must be outside the repo" ;; esac

leftovers() { # mounts (other than the root's own tmpfs) and processes under $STATE
    grep -F " $STATE/" /proc/mounts | awk -v own="$STATE/root" '$2 != own {print "mount " $2}' || true
    local p root
    for p in /proc/[0-9]*; do
        root=$(readlink "$p/root" 2>/dev/null) || continue
        [[ $root == "$STATE"/* ]] && echo "process ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
    done
    return 0
}

cleanup() {
    local rc=$? left
    set +e # every step below runs, whatever failed before it
    left=$(leftovers)
    if [[ -n $left ]]; then
        log "FAIL: left behind under $STATE (cleaning up):"
        printf '%s\n' "$left" >&2
        # Only what this run started: processes whose root is inside $STATE, by PID.
        awk '$1 == "process" {print $2}' <<<"$left" | xargs -r kill -TERM 2>/dev/null || true
        sleep 2
        rc=1
    fi
    # The root is a tmpfs: unmounting it (and whatever is still mounted inside) frees it all.
    grep -F " $STATE/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount
    rm -rf --one-file-system "$STATE"
    left=$(leftovers; grep -F " $STATE/" /proc/mounts | awk '{print "mount " $2}')
    if [[ -n $left || -e $STATE ]]; then
        log "FAIL: still left: ${left:-$STATE}"
        rc=1
    else
        log "nothing left under $STATE: no mount, no process, no file"
    fi
    exit "$rc"
}
trap cleanup EXIT

host_sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] && host_sources+=("$f")
done
((${#host_sources[@]})) || die "no apt sources on this host (/etc/apt/sources.list[.d])"

# What the root gets from the repo: the Makefile with what it includes, and e2e/tools.
mkdir -p "$STATE/src/e2e"
cp "$REPO/Makefile" "$STATE/src/"
cp -r "$REPO/e2e/tools" "$STATE/src/e2e/"
# The host's local CAs (e.g. a TLS-inspecting proxy's) go where ca-certificates (a dependency
# of npm) picks them up when make system-deps installs it: the root trusts what the host does.
mkdir -p "$STATE/src/local-cas"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$STATE/src/local-cas/"
fi

cat >"$STATE/src/probe.js" <<'EOF'
// node probe.js port                      -> prints a free port on 127.0.0.1
// node probe.js listening PORT            -> exit 0 once 127.0.0.1:PORT accepts connections
// node probe.js s3rver PORT               -> lists buckets (GET /)
// node probe.js azurite PORT              -> container + blob round trip with an account SAS
const http = require("http"), net = require("net"), crypto = require("crypto");
const [what, port] = process.argv.slice(2);
function req(method, path, body, headers) {
  return new Promise((ok, no) => {
    const r = http.request({ host: "127.0.0.1", port: +port, method, path, headers, timeout: 5000 },
      (res) => { let d = ""; res.on("data", (c) => (d += c)); res.on("end", () => ok([res.statusCode, d])); });
    r.on("error", no); r.on("timeout", () => r.destroy(new Error("timeout")));
    r.end(body);
  });
}
function sas() { // Azurite's published development account
  const account = "devstoreaccount1";
  const key = Buffer.from("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==", "base64");
  const se = new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, "Z");
  const fields = [account, "rwc", "b", "co", "", se, "", "", "2022-11-02", "", ""];
  const sig = crypto.createHmac("sha256", key).update(fields.join("\n")).digest("base64");
  return new URLSearchParams({ sv: "2022-11-02", ss: "b", srt: "co", sp: "rwc", se, sig }).toString();
}
(async () => {
  if (what === "port") {
    const s = net.createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
    return;
  }
  if (what === "listening") {
    const s = net.connect(+port, "127.0.0.1");
    s.on("connect", () => process.exit(0)); s.on("error", () => process.exit(1));
    return;
  }
  if (what === "s3rver") {
    const [status, body] = await req("GET", "/");
    console.log(`GET / -> HTTP ${status} ${body.slice(0, 160).replace(/\s+/g, " ")}`);
    if (status !== 200 || !body.includes("<Name>models</Name>")) process.exit(1);
  } else if (what === "azurite") {
    const q = sas(), blob = `/devstoreaccount1/models/demo/hello.txt?${q}`, text = "hello from node " + process.version;
    const [c] = await req("PUT", `/devstoreaccount1/models?restype=container&${q}`, "");
    const [p] = await req("PUT", blob, text, { "x-ms-blob-type": "BlockBlob", "content-length": Buffer.byteLength(text) });
    const [g, body] = await req("GET", blob);
    console.log(`PUT container -> HTTP ${c}; PUT blob -> HTTP ${p}; GET blob -> HTTP ${g} "${body}"`);
    if (c !== 201 || p !== 201 || g !== 200 || body !== text) process.exit(1);
  }
})().catch((e) => { console.log(`no answer: ${e.message}`); process.exit(2); });
EOF

cat >"$STATE/src/inside.sh" <<'EOF'
set -euo pipefail
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export KINFER_CACHE=/root/kinfer-cache
cd /opt/kinfer
say() { printf '[in root] %s\n' "$*"; }

say "make system-deps"
make --no-print-directory system-deps
pkgs=$(make -s --no-print-directory --eval 'print-%: ; @echo $($*)' print-SYSTEM_PACKAGES)
dpkg-query -W -f='${binary:Package} ${Version}\n' $pkgs
say "Debian's node $(node --version), npm $(npm --version)"

serve() { # name exe args... (PORT and DATA are substituted)
    local name=$1 exe=$2 port pid i out rc
    shift 2
    port=$(node probe.js port)
    "$exe" "${@//@PORT@/$port}" >"/root/$name.log" 2>&1 &
    pid=$!
    say "$name: pid $pid on 127.0.0.1:$port"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || { cat "/root/$name.log"; say "FAIL $name exited"; return 1; }
        node probe.js listening "$port" && break
        sleep 1
    done
    if out=$(node probe.js "$name" "$port"); then say "$name: $out"; rc=0; else say "FAIL $name: $out"; rc=1; fi
    kill -TERM "$pid"; wait "$pid" || true
    kill -0 "$pid" 2>/dev/null && { say "FAIL $name: pid $pid still running"; rc=1; }
    ((rc == 0)) || { tail -n 30 "/root/$name.log"; return 1; }
    say "$name: stopped (pid $pid)"
}

say "s3rver $S3RVER_VERSION: objectstores.sh"
s3=$(bash e2e/tools/objectstores.sh s3rver)
[[ $(bash e2e/tools/objectstores.sh s3rver 2>&1) == "$s3" ]] || { say "FAIL a warm objectstores.sh reinstalled"; exit 1; }
say "s3rver: a second objectstores.sh run installs nothing: $s3"
serve s3rver "$s3" -d /root/s3data -a 127.0.0.1 -p @PORT@ --configure-bucket models
say "azurite $AZURITE_VERSION: objectstores.sh"
az=$(bash e2e/tools/objectstores.sh azurite)
serve azurite "$az" --blobHost 127.0.0.1 --blobPort @PORT@ -l /root/azdata --disableTelemetry --skipApiVersionCheck
say "all checks passed"
EOF

# The root lives on a tmpfs under $STATE: fast to fill, and gone in one umount.
mkdir "$STATE/root"
mount -t tmpfs -o size=4g,mode=0755 kinfer-fresh-host "$STATE/root"
log "state dir $STATE; SYSTEM_PACKAGES installed by make system-deps inside the root"
log "mmdebstrap $DEBIAN_SUITE (apt variant + make) from ${host_sources[*]}"
# The hooks run on this host with $1 the root: cp stages the sources and CAs, chroot runs the
# checks in a fresh user's environment (env -i: none of this host's variables).
TMPDIR=$STATE mmdebstrap --variant=apt --include=make \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='cp -r "'"$STATE"'/src" "$1/opt/kinfer"' \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates" && cp -r "$1/opt/kinfer/local-cas/." "$1/usr/local/share/ca-certificates/"' \
    --customize-hook='chroot "$1" env -i S3RVER_VERSION='"$S3RVER_VERSION"' AZURITE_VERSION='"$AZURITE_VERSION"' bash /opt/kinfer/inside.sh' \
    --customize-hook='echo "root tmpfs used: $(df -h --output=used "$1" | tail -n 1)"' \
    "$DEBIAN_SUITE" "$STATE/root" "${host_sources[@]}" </dev/null
log "OK: make system-deps and the npm servers work on stock $DEBIAN_SUITE"
