"""live/faust"""
