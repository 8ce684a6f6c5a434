"""ssmts.models"""
