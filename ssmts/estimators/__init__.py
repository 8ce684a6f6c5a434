"""ssmts.estimators"""
