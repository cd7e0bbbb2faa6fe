"""core/windows"""
