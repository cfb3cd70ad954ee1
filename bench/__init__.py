"""The instruments of lfubench: data (readers, phantoms, preprocessing, the slice cache,
splits), metrics, complexity (parameters, MACs), latency and memory, training, evaluation, the
environment record, the dataset table and the convention sentences. Depends on ``models``
only; nothing here knows about plans, studies or the command line."""
