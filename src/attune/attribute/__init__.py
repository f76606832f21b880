"""Attribution of generated outputs to training works: exact shares, and their LDS evaluation."""
