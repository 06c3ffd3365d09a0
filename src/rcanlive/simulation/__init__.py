"""The simulated iSIM: pure-Python MMCore devices, optics and samples."""
