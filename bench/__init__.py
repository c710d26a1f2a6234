"""GPU benchmarks: hugectr-lab's CuPy backend against a PyTorch eager baseline of the same graph, in the
same process on the same GPU (``python -m bench.train --model dcn|dlrm``)."""
