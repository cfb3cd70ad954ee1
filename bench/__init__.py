"""The lfubench harness: complexity, latency and memory, data, metrics, training, evaluation."""
