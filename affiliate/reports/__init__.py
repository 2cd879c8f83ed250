"""What the partner's and staff's report pages share (no blueprint): dashboard and breakdown pages, filters."""
