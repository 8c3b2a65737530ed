"""The kiosk application's services.

filing, support, feedback, ratings, tracking, info; remote signing over central's RPC.
"""
