"""The paper's tables as experiments: which configs make each table, running the missing rows,
aggregating run dirs into results/tableN.{md,csv,png}, and the end-to-end demo."""
