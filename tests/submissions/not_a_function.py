unlearning = 42
