"""Reference solutions of the exercises (look only after trying)."""
