"""Study and plan definitions (TOML) and the Optuna sweep runner."""
