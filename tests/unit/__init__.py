"""The rules, called in one process: the state machine and its transactions, the checks of what a
request brings in, the CLI, migrations, retention, and the shape of the code (no import cycle)."""
