"""The demo merchant: a shop with the tracking snippet whose checkout reports signed sales to the conversion API."""
