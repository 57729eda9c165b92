"""L2: kernel profiler and performance database.

``run`` / ``ops`` / ``timing`` / ``fp8`` measure operators with torch (CPU or CUDA); ``grid`` says which shapes;
``table`` reads the committed CSVs under ``profiles/``; ``predict.kernel_time`` answers for any shape and GPU
without torch. See NOTES.md for the method and the accuracy.
"""
