"""modelrepo"""
