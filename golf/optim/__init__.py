"""Optimizers and schedules: Muon (Newton–Schulz orthogonalised momentum) for matrices, Adam for the rest."""
