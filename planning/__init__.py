"""Plan selection: what trains on the board under its memory budget.

The cost model (cost_model, footprint), the contribution analysis
(contribution), the evolutionary sparse-update search and its trials
(sparse_search, search_trials), TraDy's layer ranking (trady), low-rank
Adam plans (lowrank), the per-layer report (layer_report), and the one
registry of update schemes (schemes: a name -> the plan it builds) that
tools/deploy.py, tools/analyze.py and the benchmarks share.

Everything here runs on the host Trainer and needs no TensorFlow. Data
flows one way: pipeline -> artifacts (.tflite, plan) -> runtime -> board.
This package sits beside the runtime's Python binding: it may import
tflm_training; it never imports pipeline (the Keras stage) or tools.
"""
