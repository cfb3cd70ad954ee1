"""Plan text shared by the end-to-end tests: a tiny budget on a tiny LiTS phantom, CPU."""

#: a plan's sections up to its models (format with ``epochs``)
TINY_SECTIONS = """
seeds = [0]
[train]
epochs = {epochs}
batch_size = 8
threads = 2
[measure]
device = "cpu"
batch_sizes = [1]
iterations = 5
warmup = 3
threads = 2
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 5
shape = [32, 32, 8]
size = 32
"""
