"""The Ray shell: dispatcher and endpoint actors around the Ray-free core."""
