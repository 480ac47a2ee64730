"""nsr_study: the library behind the Snakemake pipeline that reproduces Zhu et al. 2025
(positive/negative sample reinforcement) across model sizes. All logic lives here; the
workflow scripts are thin adapters."""
