"""Tables, figures and the paper-style PDF report."""
