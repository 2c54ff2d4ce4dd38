# Functions for `provision.sh --with-tfjs-node` (sourced, not run): the native TensorFlow backend.
#
# @tensorflow/tfjs-node's install script downloads libtensorflow 2.9.1 and a prebuilt addon from
# hosts that are often unreachable, and older TensorFlow wheels have no standalone C API. So the C
# library comes from the tensorflow-cpu wheel on PyPI (2.12: tensorflow/libtensorflow_cc.so.2 and
# libtensorflow_framework.so.2, about 550 MB), unpacked once into the cache with the names
# tfjs-node's binding.gyp links against. During `npm install` a server on 127.0.0.1 hands the
# install script (through TFJS_NODE_BASE_URI) a tarball holding only two symlinks, deps/lib and
# deps/include, into the cache; node-gyp then builds the addon against the system's Node headers,
# and the addon finds the library through its run-time path ($ORIGIN/../../deps/lib -> the cache).
# node_modules stays small, and every clone on the machine shares one copy of the library.
#
# The GPU variant (@tensorflow/tfjs-node-gpu) is the same with the `tensorflow` wheel (a CUDA build)
# and the nvidia-*-cu12 wheels of its and-cuda extra, whose libraries it opens at run time from
# $ORIGIN/../nvidia/<lib>/lib: they go to nvidia/ beside lib/ (and deps/nvidia in the package).
#
# Each function leaves a reason in tfjs_node_why when it fails; provision.sh then falls back to wasm.

tfjs_node_why=""
tfjs_node_server_pid=""

# The TensorFlow C library of the wheel $3 (tensorflow-cpu, or tensorflow for the GPU) in
# "$1/$3-$2" (once).
tfjs_node_prepare() {
  local cache="$1" version="$2" wheel="${3:-tensorflow-cpu}"
  local dir="$cache/$wheel-$version"
  if [ -f "$dir/.mlpipe-done" ]; then
    say "TensorFlow C library $version ($wheel): $dir (cached)"
    return 0
  fi
  local py="${PYTHON:-$(command -v python3 || true)}"
  if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
    tfjs_node_why="python3 with pip is needed to fetch the $wheel wheel (set PYTHON=/path/to/python3)"
    return 1
  fi
  local start tmp
  start=$(date +%s)
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$dir.partial"
  tmp="$dir.partial/wheel"
  local platforms=(--python-version 3.11 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64)
  if [ "$wheel" = tensorflow-cpu ]; then
    say "fetching the TensorFlow C library from the $wheel $version wheel into $dir (one time, about 230 MB)"
    pip_ok() { "$py" -m pip download --quiet --disable-pip-version-check --no-deps "${platforms[@]}" -d "$tmp" "$wheel==$version" >&2; }
  else
    # The CUDA libraries are the and-cuda extra's wheels, at the versions the tensorflow wheel pins.
    say "fetching the TensorFlow C library and the CUDA libraries from the $wheel[and-cuda] $version wheels into $dir (one time, about 3.5 GB)"
    pip_ok() { "$py" -m pip download --quiet --disable-pip-version-check "${platforms[@]}" -d "$tmp" "$wheel[and-cuda]==$version" >&2; }
  fi
  if ! pip_ok; then
    tfjs_node_why="pip could not download $wheel==$version from PyPI"
    rm -rf "$dir.partial"
    return 1
  fi
  if ! PYTHON="$py" tfjs_node_unpack "$dir.partial" "$tmp"; then
    tfjs_node_why="the $wheel $version wheel has not the expected C library layout"
    rm -rf "$dir.partial"
    return 1
  fi
  rm -rf "$tmp"
  mv "$dir.partial" "$dir"
  touch "$dir/.mlpipe-done"
  say "TensorFlow C library $version unpacked in $(( $(date +%s) - start ))s: $(du -sh "$dir" | cut -f1)"
}

# Unpacks the C library, the C API headers and the CUDA libraries of the wheels in $2 into $1, with
# the names binding.gyp and the loader look for (lib/, include/, nvidia/).
tfjs_node_unpack() {
  "${PYTHON:-python3}" - "$2" "$1" <<'PY' >&2
import glob, os, re, sys, zipfile
wheels, out = sys.argv[1], sys.argv[2]
wheel = [w for w in glob.glob(os.path.join(wheels, 'tensorflow*.whl')) if re.match(r'tensorflow(_cpu)?-\d', os.path.basename(w))][0]
for nv in glob.glob(os.path.join(wheels, 'nvidia_*.whl')):
    with zipfile.ZipFile(nv) as z:
        z.extractall(out, [n for n in z.namelist() if n.startswith('nvidia/')])
lib, inc = os.path.join(out, 'lib'), os.path.join(out, 'include')
os.makedirs(lib)
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for so in ('libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'):
        with z.open('tensorflow/' + so) as src, open(os.path.join(lib, so), 'wb') as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    wanted = re.compile(r'^tensorflow/include/(tensorflow/c/.*|tensorflow/[^/]+/c/.*|tensorflow/[^/]+/platform/ctstring.*|tsl/platform/ctstring.*|xla/tsl/c/.*)$')
    for name in names:
        m = wanted.match(name)
        if m and not name.endswith('/'):
            z.extract(name, out)
os.rename(os.path.join(out, 'tensorflow', 'include'), inc)
os.rmdir(os.path.join(out, 'tensorflow'))
if not os.path.exists(os.path.join(inc, 'tensorflow/c/eager/c_api.h')):
    sys.exit('the wheel has no tensorflow/c/eager/c_api.h')
for link, target in (('libtensorflow.so', 'libtensorflow_cc.so.2'), ('libtensorflow.so.2.9.1', 'libtensorflow_cc.so.2'),
                     ('libtensorflow_framework.so', 'libtensorflow_framework.so.2')):
    os.symlink(target, os.path.join(lib, link))
PY
}

# Serves the deps tarball for tfjs-node's install script and exports what npm's child processes read.
tfjs_node_serve() {
  local cache="$1" version="$2" wheel="${3:-tensorflow-cpu}"
  local dir="$cache/$wheel-$version" served="$cache/$wheel-$version/served"
  rm -rf "$served"
  mkdir -p "$served/deps"
  local parts=(lib include) p
  [ -d "$dir/nvidia" ] && parts+=(nvidia)
  for p in "${parts[@]}"; do ln -s "$dir/$p" "$served/deps/$p"; done
  # The file names tfjs-node(-gpu) 4.x asks for: <base>{cpu,gpu}-linux-x86_64-2.9.1.tar.gz.
  tar -C "$served/deps" -czf "$served/libtensorflow-cpu-linux-x86_64-2.9.1.tar.gz" "${parts[@]}"
  ln -s libtensorflow-cpu-linux-x86_64-2.9.1.tar.gz "$served/libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz"
  rm -rf "$served/deps"
  local portfile="$served/port"
  node -e '
    const http = require("node:http"), fs = require("node:fs"), path = require("node:path");
    const [dir, portfile] = process.argv.slice(1);
    const server = http.createServer((req, res) => {
      const file = path.join(dir, path.basename(decodeURIComponent(req.url.split("?")[0])));
      fs.stat(file, (err, st) => {
        if (err || !st.isFile()) { res.writeHead(404).end(); return; }
        res.writeHead(200, { "content-length": st.size });
        fs.createReadStream(file).pipe(res);
      });
    });
    server.listen(0, "127.0.0.1", () => fs.writeFileSync(portfile, String(server.address().port)));
  ' "$served" "$portfile" &
  tfjs_node_server_pid=$!
  local i
  for i in $(seq 1 50); do
    [ -s "$portfile" ] && break
    sleep 0.1
  done
  if [ ! -s "$portfile" ]; then
    tfjs_node_why="the local server for the TensorFlow library did not start"
    tfjs_node_stop
    return 1
  fi
  export TFJS_NODE_BASE_URI="http://127.0.0.1:$(cat "$portfile")/libtensorflow-"
  # Build the addon here (a prebuilt one expects libtensorflow 2.9.1), with the running Node's headers.
  export npm_config_build_from_source="@tensorflow/tfjs-node${4:-}"
  local prefix
  prefix="$(dirname "$(dirname "$(command -v node)")")"
  if [ -f "$prefix/include/node/node_api.h" ]; then export npm_config_nodedir="$prefix"; fi
}

tfjs_node_stop() {
  if [ -n "$tfjs_node_server_pid" ]; then
    kill "$tfjs_node_server_pid" 2>/dev/null || true
    wait "$tfjs_node_server_pid" 2>/dev/null || true
    tfjs_node_server_pid=""
  fi
  unset TFJS_NODE_BASE_URI npm_config_build_from_source
}

# "@tensorflow/tfjs-node$1@<version>" when that package is installed, for the npm install of the other
# one: both are installed with --no-save, and npm removes what package.json does not list unless the
# same command names it, so installing tfjs-node-gpu alone would remove tfjs-node (and the reverse).
tfjs_node_keep() {
  local pkg="node_modules/@tensorflow/tfjs-node${1:-}/package.json"
  [ -f "$pkg" ] && printf '@tensorflow/tfjs-node%s@%s\n' "${1:-}" "$(node -p "require('./$pkg').version")"
  return 0
}

# Whether @tensorflow/tfjs-node$1 is installed and its addon loads (the reason in tfjs_node_why if not).
tfjs_node_loads() {
  local out
  if out=$(node -e "require('@tensorflow/tfjs-node${1:-}')" 2>&1); then return 0; fi
  tfjs_node_why="$(printf '%s\n' "$out" | grep -m1 -E 'Error|error' | cut -c1-200)"
  return 1
}
