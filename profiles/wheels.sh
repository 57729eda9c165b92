# Sourced by the H200 scripts from the repository root: on a bare GPU box (no simpy/plotly) install the carried
# wheels (.whl/ or ../.whl/, or the folders in $WHEELS; README "Running on the GPU machine") into /tmp/site, then put
# the repository root on PYTHONPATH. Returns 1, saying so, when simpy and plotly still do not import.
if ! python3 -c "import simpy, plotly" 2>/dev/null; then
  for d in ${WHEELS:-.whl ../.whl}; do
    if ls "$d"/*.whl > /dev/null 2>&1; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$d"/*.whl \
        && export PYTHONPATH=/tmp/site
      break
    fi
  done
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
python3 -c "import simpy, plotly" 2>/dev/null || { echo "simpy/plotly do not import: no wheels in ${WHEELS:-.whl ../.whl}" >&2; return 1; }
