"""The inference API every frontend calls: protocol-free, over the servable table and manager."""
