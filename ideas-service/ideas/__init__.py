"""The ideas service: ideas and participants."""
