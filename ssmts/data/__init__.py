"""ssmts.data"""
