"""
The token-protected JSON admin API: L{api.AdminResource} (HTTP) in front of
an L{api.IAdminTarget} (what it may do to the running service), implemented
for the real service by L{target.ServiceAdminTarget}.
"""
