import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';

/** The test apps' user: `request.user = { id }` from the upgrade's `?user=`, when it has one. */
@Injectable()
export class QueryUser implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context
      .switchToHttp()
      .getRequest<{ url: string; user?: unknown }>();
    const user = new URL(request.url, 'http://x').searchParams.get('user');
    if (user) request.user = { id: user };
    return true;
  }
}
