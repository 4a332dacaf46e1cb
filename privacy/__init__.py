"""Privacy accounting, per-site budgets and membership-inference audits. No Flower here."""
