"""ssmts.training"""
