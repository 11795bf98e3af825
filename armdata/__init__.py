"""armdata: MolmoAct-style action-reasoning data (depth tokens, end-effector traces, action tokens) at any scale."""

__version__ = "0.1.0"
