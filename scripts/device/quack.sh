# Sourced by launch.sh when /tmp/qstash exists (issue 8, the fused MLP): quack-kernels' wheels, and the CUTLASS DSL's
# cu13 libraries as an xz tar of 63.5 MB in two parts, stashed there by earlier calls on the same machine (one call
# carries 64 MiB in all): `mkdir -p /tmp/qstash && cp .qa/* /tmp/qstash/` with carry [".qa"], then the same for .qb.
# Installed under a path with "site-packages" in it: quack fingerprints the epilogue functions of code outside such
# paths through their globals, and the CUTLASS DSL's cannot be fingerprinted (a TypeError naming _LOC_TRANSFORMS).
if [ ! -d /tmp/q/site-packages/nvidia_cutlass_dsl/cu13 ]; then
  cat /tmp/qstash/cu13.part00 /tmp/qstash/cu13.part01 > /tmp/cu13.tar.xz || return 1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/q/site-packages /tmp/qstash/*.whl || return 1
  python3 -c "import lzma, tarfile; tarfile.open(fileobj=lzma.open('/tmp/cu13.tar.xz')).extractall('/tmp/q/site-packages')" || return 1
fi
# the DSL's .pth (not read from PYTHONPATH) puts dsl_packages on sys.path
export PYTHONPATH=$PYTHONPATH:/tmp/q/site-packages:/tmp/q/site-packages/nvidia_cutlass_dsl/dsl_packages
python3 -c "import quack, quack.gemm_interface; print('quack', quack.__version__)"
