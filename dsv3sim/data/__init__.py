"""Real offline text for training and routing capture: Python's standard-library sources (written by the
CPython developers, present on every machine with this interpreter), a deterministic train / held-out split
by file, and a byte-level BPE tokenizer trained locally on the training split."""

from dsv3sim.data.corpus import token_ids, tokenizer_for  # noqa: F401
from dsv3sim.data.tokenizer import BPETokenizer, get_tokenizer  # noqa: F401
