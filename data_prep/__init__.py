"""Scripts that turn raw public data sets into training data (thin wrappers of `instagan prepare`)."""
