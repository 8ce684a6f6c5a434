"""ssmts.layers"""
