"""Developer tools beside the runtime package ``algorithm``: evaluation, benchmarks, data inspection,
synthetic volumes, the sample cases, the nnU-Net baseline and model export. The container holds
``algorithm`` only; nothing in it imports this package."""
